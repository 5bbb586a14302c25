"""Scores published versions with the offline judge and records the scores in their metadata.

A version is scored exactly as the sampler would serve it: the published artifact is loaded, images
come from seeded latents, and the judge (trained once per dataset, cached in STORE/judges/) compares
them with the real test split, beside the floor of real train images. The trainer scores in a
background thread so training goes on meanwhile; `python -m trainer_service.evaluate` scores by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from gan_common import images as image_utils
from gan_common import store as store_layout
from trainer_service.data import DatasetError, load_test_split

logger = logging.getLogger(__name__)

JUDGE_IMAGE_SHAPE = (28, 28, 1)
# Numeric results that go into metadata.json's "scores" (and GetModelInfo); the floor gets a prefix.
SCORE_KEYS = ("fid", "kid_mean", "kid_std", "precision", "recall", "classes_covered", "class_kl")


class ScoringUnavailable(Exception):
    """The dataset or the model cannot be judged (no labelled test split, not 28x28 grayscale)."""


def flatten_scores(result: dict) -> dict[str, float]:
    """evaluate_images' result as the flat name -> number map that metadata and the API carry."""
    scores = {key: float(result[key]) for key in SCORE_KEYS}
    scores.update(num_samples=float(result["num_samples"]), judge_accuracy=float(result["judge_accuracy"]))
    for key in SCORE_KEYS:
        scores[f"floor_{key}"] = float(result["floor"][key])
    return scores


class VersionScorer:
    """Loads the judge and the real splits once, then scores any number of versions of one store."""

    def __init__(self, store: Path | str, dataset: str, samples: int = 2000, seed: int = 0,
                 allow_download: bool = False, judge_cache: Path | str | None = None) -> None:
        self.store = Path(store)
        self.judge_cache = Path(judge_cache) if judge_cache is not None else self.store
        self.dataset = dataset
        self.samples = samples
        self.seed = seed
        self.allow_download = allow_download
        self._judge = None
        self._splits = None
        self._lock = threading.Lock()

    def _prepare(self):
        # Deferred imports: the judge pulls in the evaluation stack, only needed once scoring starts.
        from trainer_service.evaluation import load_or_train_judge, uint8_to_judge_input

        with self._lock:
            if self._judge is None:
                try:
                    train, test = load_test_split(self.dataset, self.allow_download)
                except DatasetError as error:
                    raise ScoringUnavailable(str(error)) from None
                if train.image_shape != JUDGE_IMAGE_SHAPE:
                    raise ScoringUnavailable(f"the judge scores 28x28 grayscale images; {self.dataset!r} holds "
                                             f"{train.image_shape}")
                train_x, test_x = uint8_to_judge_input(train.images), uint8_to_judge_input(test.images)
                class_names = train.class_names or tuple(str(c) for c in range(int(train.labels.max()) + 1))
                self._judge = load_or_train_judge(self.judge_cache, train.name.replace("_", "-"), train_x, train.labels,
                                                  test_x, test.labels, class_names)
                self._splits = (train_x, test_x, test.labels)
        return self._judge, self._splits

    def score(self, version: int, write: bool = True) -> dict:
        """Scores one published version; returns evaluate_images' full result (floor included)."""
        from sampler_service.loading import load_version  # the sampler's own loader: score what it serves
        from trainer_service.evaluation import evaluate_images, uint8_to_judge_input

        judge, (train_x, test_x, test_y) = self._prepare()
        started = time.monotonic()
        model = load_version(self.store, version)
        if model.image_shape != JUDGE_IMAGE_SHAPE:
            raise ScoringUnavailable(f"version {version} makes {model.image_shape} images; the judge needs 28x28x1")
        latents = image_utils.latents_for_seed(self.seed, self.samples, model.latent_dim)
        labels = (image_utils.labels_for_seed(self.seed, self.samples, model.metadata.num_classes)
                  if model.metadata.num_classes else None)
        generated = uint8_to_judge_input(model.generate(latents, labels))
        result = evaluate_images(judge, generated, test_x, test_y, real_train_images=train_x)
        if write:
            store_layout.write_scores(self.store, version, flatten_scores(result),
                                      extra={"judge_version": result["judge_version"]})
        logger.info("version %d: FID %.2f (floor %.2f)  KID %.4f  precision %.3f  recall %.3f  "
                    "%d classes covered  [%d samples, %.0fs]", version, result["fid"], result["floor"]["fid"],
                    result["kid_mean"], result["precision"], result["recall"], result["classes_covered"],
                    self.samples, time.monotonic() - started)
        return result


class BackgroundScoring:
    """Scores versions one at a time on a daemon thread; a newer request supersedes a waiting one.

    A daemon thread, because a stopping trainer must not wait minutes for a judge to train: everything
    scoring writes (the judge, metadata.json) is written atomically, so being cut off loses nothing.
    """

    def __init__(self, scorer: VersionScorer, on_scores: Callable[[int, dict], None] | None = None) -> None:
        self.scorer = scorer
        self.on_scores = on_scores
        self._condition = threading.Condition()
        self._waiting: int | None = None
        self._busy = False
        self._closed = False
        self._disabled = False
        self._thread = threading.Thread(target=self._work, name="scoring", daemon=True)
        self._thread.start()

    def submit(self, version: int) -> None:
        with self._condition:
            if not self._disabled and not self._closed:
                self._waiting = version  # only the newest waiting version matters
                self._condition.notify_all()

    def _work(self) -> None:
        while True:
            with self._condition:
                while self._waiting is None and not self._closed:
                    self._condition.wait()
                if self._waiting is None:
                    return
                version, self._waiting, self._busy = self._waiting, None, True
            try:
                self._score(version)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _score(self, version: int) -> None:
        try:
            result = self.scorer.score(version)
        except ScoringUnavailable as error:
            logger.warning("quality scoring is off for this run: %s", error)
            with self._condition:
                self._disabled, self._waiting = True, None
            return
        except Exception:  # scoring must never take training down with it
            logger.exception("scoring version %d failed", version)
            return
        if self.on_scores is not None:
            self.on_scores(version, result)

    def close(self, wait: bool) -> None:
        """Scores what is waiting first (wait=True), or leaves now (wait=False): a scoring in progress
        is cut off when the process exits."""
        with self._condition:
            self._closed = True
            if not wait and (self._waiting is not None or self._busy):
                logger.info("left quality scoring undone; `python -m trainer_service.evaluate --store %s` "
                            "scores a version by hand", self.scorer.store)
                self._waiting = None
            self._condition.notify_all()
        if wait:
            self._thread.join()


def scores_to_summaries(result: dict) -> dict[str, float]:
    """TensorBoard scalar names for a scoring result."""
    return {f"quality/{key}": float(result[key]) for key in SCORE_KEYS}


def as_table(version: int, result: dict) -> str:
    """Human-readable scores with the floor beside each, as `python -m trainer_service.evaluate` prints."""
    rows = [f"version {version}: {result['num_samples']} samples, judge {result['judge_version'][:12]} "
            f"(test accuracy {result['judge_accuracy']:.3f})",
            f"{'metric':<16}{'score':>12}{'floor':>12}"]
    for key in SCORE_KEYS:
        rows.append(f"{key:<16}{result[key]:>12.4f}{result['floor'][key]:>12.4f}")
    histogram = np.asarray(result["class_histogram"]).tolist()
    rows.append(f"class histogram {histogram}")
    return "\n".join(rows)
