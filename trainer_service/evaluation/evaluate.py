"""Scores generated images against a real reference split, beside the best achievable "floor".

The floor is the same metrics for a same-sized sample of real *train* images against the real
test split. FID, KID and k-NN precision/recall all depend on the sample size, so a score is only
readable next to a floor measured at the same size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from trainer_service.evaluation import metrics
from trainer_service.evaluation.judge import Judge, as_judge_input, dataset_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    kid_subsets: int = 100          # StyleGAN2-ADA's KID defaults
    kid_subset_size: int = 1000     # capped at the smaller sample's size
    pr_k: int = 3                   # k of the k-NN manifolds (Kynkäänniemi et al.)
    coverage_min_fraction: float = 0.01
    seed: int = 0                   # KID subsets and the floor's train sample
    batch_size: int = 500           # judge forward-pass batch


@dataclass(frozen=True)
class RealReference:
    """Everything about the real split that every evaluation reuses; built once per judge."""

    judge_version: str
    features: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    radii: np.ndarray          # k-NN radii of the real features, for precision
    pr_k: int
    class_hist: np.ndarray     # the judge's *predicted* classes on the real split
    judge_accuracy: float      # the judge's accuracy on this split (a sanity check)


def build_reference(
    judge: Judge, real_images: np.ndarray, real_labels: np.ndarray, settings: EvalSettings
) -> RealReference:
    feats, classes = judge.features_and_classes(real_images, settings.batch_size)
    mean, cov = metrics.feature_stats(feats)
    return RealReference(
        judge_version=judge.version,
        features=feats,
        mean=mean,
        cov=cov,
        radii=metrics.knn_radii(feats, settings.pr_k),
        pr_k=settings.pr_k,
        # Predicted, not true, labels: a perfect generator then scores KL ~ 0 even though the
        # judge confuses e.g. shirts and T-shirts, because fakes go through the same judge.
        class_hist=np.bincount(classes, minlength=judge.num_classes),
        judge_accuracy=float((classes == np.asarray(real_labels).astype(np.int64)).mean()),
    )


def score_features(
    reference: RealReference,
    fake_feats: np.ndarray,
    fake_classes: np.ndarray,
    num_classes: int,
    settings: EvalSettings,
) -> dict:
    """All metrics of one fake feature set against the reference (pure numpy)."""
    precision = metrics.fraction_in_manifold(fake_feats, reference.features, reference.radii)
    recall = metrics.fraction_in_manifold(
        reference.features, fake_feats, metrics.knn_radii(fake_feats, reference.pr_k)
    )
    kid_mean, kid_std = metrics.kernel_inception_distance(
        fake_feats, reference.features, settings.kid_subsets, settings.kid_subset_size,
        settings.seed,
    )
    coverage = metrics.class_coverage(
        fake_classes, reference.class_hist, num_classes, settings.coverage_min_fraction
    )
    return {
        "num_samples": int(len(fake_feats)),
        "fid": metrics.frechet_distance_from_stats(
            *metrics.feature_stats(fake_feats), reference.mean, reference.cov
        ),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
        **coverage,
    }


# In-memory caches: real features and floors depend only on (judge, data, settings), and a
# training run evaluates many snapshots against the same split.
_references: dict[tuple, RealReference] = {}
_floors: dict[tuple, dict] = {}


def _reference_for(judge: Judge, images: np.ndarray, labels: np.ndarray,
                   settings: EvalSettings) -> tuple[tuple, RealReference]:
    key = (judge.version, dataset_fingerprint(images, np.asarray(labels)), settings.pr_k)
    if key not in _references:
        log.info("computing real reference features for %d images", len(images))
        _references[key] = build_reference(judge, images, labels, settings)
    return key, _references[key]


def floor_metrics(
    judge: Judge,
    real_train_images: np.ndarray,
    reference: RealReference,
    num_samples: int,
    settings: EvalSettings,
) -> dict:
    """Metrics of ``num_samples`` real train images (seeded draw) against the reference."""
    if num_samples > len(real_train_images):
        raise ValueError(f"floor needs {num_samples} train images, got {len(real_train_images)}")
    idx = np.random.default_rng(settings.seed).choice(len(real_train_images), num_samples,
                                                      replace=False)
    feats, classes = judge.features_and_classes(real_train_images[idx], settings.batch_size)
    return score_features(reference, feats, classes, judge.num_classes, settings)


def evaluate_images(
    judge: Judge,
    generated_images: np.ndarray,
    real_test_images: np.ndarray,
    real_test_labels: np.ndarray,
    real_train_images: np.ndarray | None = None,
    settings: EvalSettings = EvalSettings(),
) -> dict:
    """Scores [-1, 1] generated images; adds ``floor`` when ``real_train_images`` is given.

    Keys: num_samples, fid, kid_mean, kid_std (lower is better), precision, recall (higher is
    better), class_histogram, classes_covered, coverage_threshold, class_kl (lower is better),
    judge_version, judge_accuracy, floor (the same metric keys, or None).
    """
    fake = as_judge_input(generated_images)
    real = as_judge_input(real_test_images)
    ref_key, reference = _reference_for(judge, real, real_test_labels, settings)
    fake_feats, fake_classes = judge.features_and_classes(fake, settings.batch_size)
    result = score_features(reference, fake_feats, fake_classes, judge.num_classes, settings)

    floor = None
    if real_train_images is not None:
        train = as_judge_input(real_train_images)
        floor_key = (ref_key, dataset_fingerprint(train), len(fake), settings)
        if floor_key not in _floors:
            _floors[floor_key] = floor_metrics(judge, train, reference, len(fake), settings)
        floor = _floors[floor_key]
    return {
        **result,
        "judge_version": judge.version,
        "judge_accuracy": reference.judge_accuracy,
        "floor": dict(floor) if floor is not None else None,
    }


def clear_caches() -> None:
    """Drops cached real features and floors (e.g. between tests or after a judge change)."""
    _references.clear()
    _floors.clear()
