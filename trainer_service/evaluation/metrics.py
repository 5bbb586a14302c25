"""Sample-quality metrics on feature arrays of shape (N, D): pure numpy, no model in sight.

Anchors: TF-GAN ``frechet_classifier_distance`` / ``kernel_classifier_distance``; StyleGAN2-ADA
``metrics/kernel_inception_distance.py`` and ``metrics/precision_recall.py`` (Kynkäänniemi et
al. 2019). Everything is computed in float64: covariances of ReLU features are near-singular and
float32 loses the small eigenvalues that FID's trace term depends on.
"""

from __future__ import annotations

import numpy as np

# Rows per block when forming pairwise distances, so 10k x 10k never sits in memory at once.
_ROW_BLOCK = 1024


def _as_features(feats: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(feats, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < min_rows:
        raise ValueError(f"{name}: expected shape (N >= {min_rows}, D), got {x.shape}")
    return x


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof=1, as TF-GAN and pytorch-fid) of a feature array."""
    x = _as_features(feats, "feats")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    # Symmetric eigendecomposition instead of scipy.linalg.sqrtm: real by construction, no
    # scipy dependency, and tiny negative eigenvalues from round-off are clipped, not complex.
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """FID between two Gaussians: |mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A B)^1/2)."""
    # tr((A B)^1/2) = tr((A^1/2 B A^1/2)^1/2), and the right-hand matrix is symmetric PSD, so
    # its eigenvalues are real and non-negative (TF-GAN's trace_sqrt_product does the same).
    sqrt_a = _sqrt_psd(cov_a)
    inner = sqrt_a @ cov_b @ sqrt_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mean_a - mean_b
    fid = float(diff @ diff) + float(np.trace(cov_a) + np.trace(cov_b)) - 2.0 * trace_sqrt
    # FID is a squared Wasserstein-2 distance; a negative value is round-off, never signal.
    return max(fid, 0.0)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet (Inception-style) distance between two feature sets; lower is better."""
    return frechet_distance_from_stats(*feature_stats(feats_a), *feature_stats(feats_b))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of one subset pair with the KID kernel k(a, b) = (a.b / d + 1)^3.

    Drops the kernel's diagonal terms, so it is zero in expectation for equal distributions and
    can come out negative on any one subset.
    """
    x = _as_features(x, "x")
    y = _as_features(y, "y")
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kernel_inception_distance(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID as (mean, std) of unbiased MMD^2 over random subsets; lower is better.

    Subsets are drawn without replacement within each subset and independently across subsets
    (StyleGAN2-ADA's scheme); ``subset_size`` is capped at the smaller set's size.
    """
    a = _as_features(feats_a, "feats_a")
    b = _as_features(feats_b, "feats_b")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"subset_size must be >= 2, got {m}")
    rng = np.random.default_rng(seed)
    values = np.array([
        mmd2_unbiased(
            a[rng.choice(a.shape[0], m, replace=False)],
            b[rng.choice(b.shape[0], m, replace=False)],
        )
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std())


def _squared_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = (a * a).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return np.clip(d, 0.0, None)


def knn_radii(feats: np.ndarray, k: int = 3) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (self excluded)."""
    x = _as_features(feats, "feats", min_rows=k + 1)
    x_sq = (x * x).sum(axis=1)
    radii = np.empty(x.shape[0])
    for start in range(0, x.shape[0], _ROW_BLOCK):
        d = _squared_distances(x[start:start + _ROW_BLOCK], x, x_sq)
        # Index k, not k - 1: each row's smallest distance is the point itself (0).
        radii[start:start + _ROW_BLOCK] = np.partition(d, k, axis=1)[:, k]
    return np.sqrt(radii)


def fraction_in_manifold(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> float:
    """Share of ``points`` inside at least one ball (center, radius): the k-NN manifold."""
    p = _as_features(points, "points", min_rows=1)
    c = _as_features(centers, "centers", min_rows=1)
    c_sq = (c * c).sum(axis=1)
    r_sq = np.asarray(radii, dtype=np.float64) ** 2
    inside = 0
    for start in range(0, p.shape[0], _ROW_BLOCK):
        d = _squared_distances(p[start:start + _ROW_BLOCK], c, c_sq)
        inside += int((d <= r_sq[None, :]).any(axis=1).sum())
    return inside / p.shape[0]


def precision_recall(
    real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019); higher is better.

    Precision: share of fakes inside the real k-NN manifold (are fakes realistic?).
    Recall: share of reals inside the fake k-NN manifold (is the real variety covered?).
    """
    precision = fraction_in_manifold(fake_feats, real_feats, knn_radii(real_feats, k))
    recall = fraction_in_manifold(real_feats, fake_feats, knn_radii(fake_feats, k))
    return precision, recall


def class_coverage(
    pred_labels_fake: np.ndarray,
    real_label_hist: np.ndarray,
    num_classes: int,
    min_fraction: float = 0.01,
    smoothing: float = 1.0,
) -> dict:
    """How generated samples spread over the judge's classes.

    A class is *covered* when it receives at least ``min_fraction`` of the samples (and at least
    one sample): 1% is a tenth of a fair share for 10 classes, so a handful of stray
    misclassifications of a collapsed generator does not count as covering a class.

    ``class_kl`` is KL(real || fake): it weighs each real class by its real frequency, so a
    dropped class (the mode-collapse failure) costs a lot, while KL(fake || real) would barely
    notice it. ``smoothing`` pseudo-counts are added to every fake class (Laplace) so a missing
    class gives a large but finite value; ``real_label_hist`` may be counts or frequencies.
    """
    labels = np.asarray(pred_labels_fake).astype(np.int64).ravel()
    if labels.size == 0:
        raise ValueError("pred_labels_fake is empty")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    real = np.asarray(real_label_hist, dtype=np.float64).ravel()
    if real.shape != (num_classes,) or real.min() < 0 or real.sum() <= 0:
        raise ValueError(f"real_label_hist must be {num_classes} non-negative values, got {real}")

    hist = np.bincount(labels, minlength=num_classes)
    threshold = max(1, int(np.ceil(min_fraction * labels.size)))
    p_real = real / real.sum()
    p_fake = (hist + smoothing) / (labels.size + smoothing * num_classes)
    nonzero = p_real > 0
    kl = float((p_real[nonzero] * np.log(p_real[nonzero] / p_fake[nonzero])).sum())
    return {
        "class_histogram": hist.tolist(),
        "classes_covered": int((hist >= threshold).sum()),
        "coverage_threshold": threshold,
        "class_kl": kl,
    }
