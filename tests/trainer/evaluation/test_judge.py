"""Judge smoke tests on a small slice of real Fashion-MNIST (one short epoch, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer_service.evaluation import (
    EvalSettings, JudgeConfig, clear_caches, evaluate_images, load_judge, load_or_train_judge,
    save_judge, train_judge, uint8_to_judge_input,
)
from trainer_service.evaluation import evaluate as evaluate_module
from trainer_service.evaluation import judge_store
from trainer_service.data import FASHION_MNIST_CLASSES, load_idx_folder

CONFIG = JudgeConfig(epochs=1, batch_size=64)
# KID subsets are the slow part of an evaluation; a few suffice for a smoke test.
SETTINGS = EvalSettings(kid_subsets=10, kid_subset_size=300)

@pytest.fixture(scope="module")
def data(fashion_mnist_dir: Path) -> dict[str, np.ndarray]:
    # fashion_mnist_dir (tests/conftest.py) fails loudly when the dataset is not installed.
    train = load_idx_folder(fashion_mnist_dir, split="train")
    test = load_idx_folder(fashion_mnist_dir, split="t10k")
    train_x, train_y, test_x, test_y = train.images, train.labels, test.images, test.labels
    return {
        "train_x": uint8_to_judge_input(train_x[:6000]), "train_y": train_y[:6000],
        "test_x": uint8_to_judge_input(test_x[:1000]), "test_y": test_y[:1000],
        "pool_x": uint8_to_judge_input(train_x[6000:8000]),  # disjoint "generator" stand-in
    }


@pytest.fixture(scope="module")
def judge(data):
    return train_judge(data["train_x"], data["train_y"], data["test_x"], data["test_y"],
                       FASHION_MNIST_CLASSES, CONFIG, dataset_name="fmnist-slice")


def test_uint8_conversion_maps_to_gan_range():
    x = uint8_to_judge_input(np.array([[[0, 255] * 14] * 28], dtype=np.uint8))
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0


def test_judge_reaches_sane_accuracy(judge, data):
    assert judge.info.test_accuracy > 0.70
    assert judge.num_classes == 10 and len(judge.version) == 64
    feats = judge.features(data["test_x"][:50])
    assert feats.shape == (50, CONFIG.feature_dim) and feats.dtype == np.float32
    classes = judge.predict_classes(data["test_x"])
    assert (classes == data["test_y"]).mean() == pytest.approx(judge.info.test_accuracy, abs=1e-6)


def test_judge_refuses_uint8_and_out_of_range_input(judge):
    with pytest.raises(ValueError, match="uint8_to_judge_input"):
        judge.features(np.zeros((2, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="range"):
        judge.features(np.full((2, 28, 28), 3.0, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        judge.features(np.zeros((2, 32, 32), dtype=np.float32))


def test_save_load_round_trip_gives_identical_features(judge, data, tmp_path):
    folder = save_judge(judge, tmp_path)
    assert folder == tmp_path / "judges" / f"fmnist-slice-{judge.version[:12]}"
    assert sorted(p.name for p in folder.iterdir()) == ["judge.json", "judge.keras"]
    assert folder.stat().st_mode & 0o777 == 0o755
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left
    loaded = load_judge(folder)
    assert loaded.info == judge.info
    x = data["test_x"][:200]
    np.testing.assert_array_equal(loaded.features(x), judge.features(x))
    np.testing.assert_array_equal(loaded.predict_classes(x), judge.predict_classes(x))
    assert save_judge(judge, tmp_path) == folder  # publishing again keeps the first copy


def test_load_or_train_uses_cache_for_same_data_and_config(judge, data, tmp_path, monkeypatch):
    save_judge(judge, tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although a cached judge matches")

    monkeypatch.setattr(judge_store, "train_judge", no_training)
    args = (tmp_path, "fmnist-slice", data["train_x"], data["train_y"], data["test_x"],
            data["test_y"], FASHION_MNIST_CLASSES)
    assert load_or_train_judge(*args, CONFIG).info == judge.info
    # Any change of settings or data changes the version, so the cache must miss.
    with pytest.raises(AssertionError, match="trained although"):
        load_or_train_judge(*args, JudgeConfig(epochs=2, batch_size=64))
    with pytest.raises(AssertionError, match="trained although"):
        load_or_train_judge(tmp_path, "fmnist-slice", data["train_x"][:-1], data["train_y"][:-1],
                            data["test_x"], data["test_y"], FASHION_MNIST_CLASSES, CONFIG)


def test_evaluate_images_scores_real_near_floor_and_collapse_badly(judge, data):
    clear_caches()
    real_like = data["pool_x"][:500]
    # A collapsed generator: one image with a little noise, still in [-1, 1].
    noise = np.random.default_rng(0).normal(0, 0.05, size=(500, 28, 28, 1)).astype(np.float32)
    collapsed = np.clip(data["pool_x"][600:601] + noise, -1, 1)

    good = evaluate_images(judge, real_like, data["test_x"], data["test_y"],
                           real_train_images=data["train_x"], settings=SETTINGS)
    bad = evaluate_images(judge, collapsed, data["test_x"], data["test_y"],
                          real_train_images=data["train_x"], settings=SETTINGS)

    floor = good["floor"]
    assert floor is not None and floor == bad["floor"]  # same size and seed: cached floor
    assert len(evaluate_module._references) == 1 and len(evaluate_module._floors) == 1
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "classes_covered",
                "class_histogram", "class_kl", "num_samples"):
        assert key in good and key in floor
    assert good["judge_accuracy"] == pytest.approx(judge.info.test_accuracy, abs=1e-6)
    assert good["num_samples"] == floor["num_samples"] == 500

    assert good["classes_covered"] == floor["classes_covered"] == 10
    assert good["fid"] < 2 * floor["fid"] + 1.0 and good["recall"] > 0.5
    assert bad["fid"] > 5 * good["fid"] and bad["kid_mean"] > 5 * max(good["kid_mean"], 1e-3)
    assert bad["recall"] < 0.05 and bad["classes_covered"] <= 2
    assert bad["class_kl"] > 1.0 > good["class_kl"]
    clear_caches()
