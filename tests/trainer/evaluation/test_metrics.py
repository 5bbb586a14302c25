"""Metric tests on small synthetic Gaussian features: fast, no model involved."""

from __future__ import annotations

import numpy as np
import pytest

from trainer_service.evaluation.metrics import (
    class_coverage, frechet_distance, frechet_distance_from_stats, kernel_inception_distance,
    knn_radii, mmd2_unbiased, precision_recall,
)

DIM = 16


def gaussian(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)) + shift


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return gaussian(1000, seed=1)


@pytest.fixture(scope="module")
def variants(real: np.ndarray) -> dict[str, np.ndarray]:
    center = real.mean(axis=0)
    return {
        "same_dist": gaussian(1000, seed=2),
        "shifted": gaussian(1000, seed=3, shift=1.0),
        # Mode collapse: every sample within a hair of one point.
        "collapsed": center + 0.01 * np.random.default_rng(4).normal(size=(1000, DIM)),
    }


def test_fid_of_identical_sets_is_zero(real):
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_closed_form_for_diagonal_gaussians():
    # For diagonal covariances FID = |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    a, b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    mu_a, mu_b = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 5.0 + float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    got = frechet_distance_from_stats(mu_a, np.diag(a), mu_b, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_fid_matches_direct_trace_sqrt_for_non_commuting_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    ca, cb = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    # Eigenvalues of A B (A, B positive definite) are real and positive.
    trace_sqrt = np.sqrt(np.linalg.eigvals(ca @ cb).real).sum()
    expected = np.trace(ca) + np.trace(cb) - 2 * trace_sqrt
    assert frechet_distance_from_stats(np.zeros(5), ca, np.zeros(5), cb) == pytest.approx(expected)


def test_fid_handles_rank_deficient_covariance():
    # Fewer samples than dimensions: singular covariance, still finite and non-negative.
    few = gaussian(8, seed=5)
    assert np.isfinite(frechet_distance(few, gaussian(8, seed=6)))
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-8)


def test_fid_and_kid_rank_shifted_and_collapsed_worse(real, variants):
    fid = {k: frechet_distance(real, v) for k, v in variants.items()}
    kid = {k: kernel_inception_distance(real, v, subsets=20, subset_size=500)[0]
           for k, v in variants.items()}
    assert fid["same_dist"] < 1.0
    assert fid["shifted"] > 10 * fid["same_dist"] and fid["shifted"] == pytest.approx(DIM, rel=0.2)
    assert fid["collapsed"] > 10 * fid["same_dist"]
    assert abs(kid["same_dist"]) < 0.01
    assert kid["shifted"] > 1.0 and kid["collapsed"] > 0.1


def test_kid_of_identical_sets_is_near_zero(real):
    mean, std = kernel_inception_distance(real, real, subsets=20, subset_size=500)
    assert abs(mean) < 0.05 and std > 0


def _mmd2_biased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_kid_is_unbiased_on_small_subsets():
    # Two independent samples of one Gaussian, many tiny subsets: the unbiased estimator
    # averages to ~0 and is often negative; the biased V-statistic is positive on average.
    pool_a, pool_b = gaussian(5000, seed=7)[:, :8], gaussian(5000, seed=8)[:, :8]
    rng = np.random.default_rng(9)
    draw = lambda pool: pool[rng.choice(5000, 10, replace=False)]  # noqa: E731
    pairs = [(draw(pool_a), draw(pool_b)) for _ in range(1000)]
    unbiased = np.array([mmd2_unbiased(x, y) for x, y in pairs])
    biased = np.array([_mmd2_biased(x, y) for x, y in pairs])
    stderr = unbiased.std() / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 4 * stderr
    assert (unbiased < 0).mean() > 0.2
    assert biased.mean() > 10 * stderr and (biased > 0).all()

    mean, std = kernel_inception_distance(pool_a, pool_b, subsets=1000, subset_size=10, seed=3)
    assert abs(mean) < 4 * std / np.sqrt(1000)


def test_kid_rejects_bad_subsets(real):
    with pytest.raises(ValueError):
        kernel_inception_distance(real, real, subsets=0)
    with pytest.raises(ValueError):
        kernel_inception_distance(real[:1], real)


def test_knn_radii_excludes_self():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(knn_radii(points, k=1), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(knn_radii(points, k=2), [3.0, 2.0, 3.0, 6.0])


def test_precision_recall_of_identical_sets_is_one(real):
    assert precision_recall(real, real, k=3) == (1.0, 1.0)


def test_precision_recall_detect_collapse_and_shift(real, variants):
    p_same, r_same = precision_recall(real, variants["same_dist"])
    _, r_collapsed = precision_recall(real, variants["collapsed"])
    p_shift, r_shift = precision_recall(real, variants["shifted"])
    assert p_same > 0.6 and r_same > 0.6
    assert r_collapsed < 0.05
    assert p_shift < p_same - 0.2 and r_shift < r_same - 0.2


def test_class_coverage_counts_and_thresholds():
    uniform_real = np.full(10, 1000)
    small = np.array([0] * 50 + [1] * 49 + [2])  # 100 samples: threshold is 1 sample
    out = class_coverage(small, uniform_real, 10)
    assert out["class_histogram"] == [50, 49, 1] + [0] * 7
    assert out["classes_covered"] == 3 and out["coverage_threshold"] == 1

    # 1000 samples: threshold is 10, so the classes with 5 stray samples do not count.
    big = np.array([0] * 990 + [1] * 5 + [2] * 5)
    out = class_coverage(big, uniform_real, 10)
    assert out["classes_covered"] == 1 and out["coverage_threshold"] == 10
    assert class_coverage(big, uniform_real, 10, min_fraction=0.0)["classes_covered"] == 3


def test_class_kl_is_zero_for_matching_and_large_for_dropped_classes():
    real_hist = np.full(10, 0.1)  # frequencies work as well as counts
    balanced = np.repeat(np.arange(10), 100)
    assert class_coverage(balanced, real_hist, 10)["class_kl"] == pytest.approx(0.0, abs=1e-12)
    half = np.repeat(np.arange(5), 200)
    single = np.zeros(1000, dtype=int)
    kl_half = class_coverage(half, real_hist, 10)["class_kl"]
    kl_single = class_coverage(single, real_hist, 10)["class_kl"]
    assert np.isfinite(kl_single) and kl_single > kl_half > 1.0


def test_class_coverage_rejects_bad_input():
    with pytest.raises(ValueError):
        class_coverage(np.array([0, 10]), np.ones(10), 10)
    with pytest.raises(ValueError):
        class_coverage(np.array([0, 1]), np.ones(9), 10)
    with pytest.raises(ValueError):
        class_coverage(np.array([], dtype=int), np.ones(10), 10)
