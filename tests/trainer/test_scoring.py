"""Quality scoring of published versions: the judge on a real Fashion-MNIST slice, real SavedModels."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from gan_common import store as store_layout
from tests.conftest import publish_tiny_generator
from trainer_service import evaluate as evaluate_cli
from trainer_service.data import DatasetError, load_idx_folder, load_test_split
from trainer_service.progress import ProgressTracker
from trainer_service.scoring import SCORE_KEYS, ScoringUnavailable, VersionScorer
from trainer_service.train import Trainer


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def small_fashion_mnist(fashion_mnist_dir, tmp_path_factory) -> Path:
    """A 3000/500 slice of real Fashion-MNIST as an IDX folder: a judge trains on it in seconds."""
    folder = tmp_path_factory.mktemp("fmnist-slice")
    for split, count in (("train", 3000), ("t10k", 500)):
        data = load_idx_folder(fashion_mnist_dir, split=split)
        write_idx(folder / f"{split}-images-idx3-ubyte", data.images[:count, ..., 0])
        write_idx(folder / f"{split}-labels-idx1-ubyte", data.labels[:count])
    return folder


def test_scorer_records_scores_and_floor_in_metadata(tmp_path, small_fashion_mnist):
    publish_tiny_generator(tmp_path, 5)
    result = VersionScorer(tmp_path, str(small_fashion_mnist), samples=200).score(5)
    scores = store_layout.read_metadata(tmp_path, 5).scores
    assert set(SCORE_KEYS) <= set(scores) and scores["num_samples"] == 200
    assert scores["fid"] == pytest.approx(result["fid"])
    # An untrained generator is far from real data; real train images against real test are close.
    assert scores["fid"] > 10 * scores["floor_fid"]
    assert scores["floor_classes_covered"] >= 8 and scores["judge_accuracy"] > 0.6  # a judge of 3000 images
    assert list((tmp_path / "judges").iterdir()), "the judge is cached in the store"
    assert store_layout.read_metadata(tmp_path, 5).extra["judge_version"] == result["judge_version"]


def test_same_version_and_seed_score_the_same(tmp_path, small_fashion_mnist):
    publish_tiny_generator(tmp_path, 1)
    scorer = VersionScorer(tmp_path, str(small_fashion_mnist), samples=100)
    assert scorer.score(1, write=False)["fid"] == scorer.score(1, write=False)["fid"]
    assert store_layout.read_metadata(tmp_path, 1).scores == {}


def test_conditional_versions_are_scored_over_all_classes(tmp_path, small_fashion_mnist):
    publish_tiny_generator(tmp_path, 2, class_names=tuple(f"c{i}" for i in range(10)))
    result = VersionScorer(tmp_path, str(small_fashion_mnist), samples=100).score(2)
    assert result["num_samples"] == 100


def test_dataset_without_test_split_is_refused_in_one_line(tmp_path):
    np.savez(tmp_path / "data.npz", x_train=np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="no labelled test split"):
        load_test_split(str(tmp_path / "data.npz"))
    publish_tiny_generator(tmp_path / "store", 1)
    with pytest.raises(ScoringUnavailable, match="no labelled test split"):
        VersionScorer(tmp_path / "store", str(tmp_path / "data.npz")).score(1)


def test_evaluate_cli_prints_scores_beside_the_floor(tmp_path, small_fashion_mnist, capsys):
    publish_tiny_generator(tmp_path, 3)
    assert evaluate_cli.main(["--store", str(tmp_path), "--dataset", str(small_fashion_mnist),
                              "--samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "version 3" in out and "fid" in out and "floor" in out
    assert store_layout.read_metadata(tmp_path, 3).scores["num_samples"] == 100


@pytest.mark.parametrize("argv, message", [
    ([], "--store is required"),
    (["--store", "{empty}"], "holds no published version"),
    (["--store", "{empty}", "--samples", "1"], "--samples must be between"),
])
def test_evaluate_cli_user_mistakes_are_one_line(tmp_path, capsys, argv, message):
    argv = [arg.replace("{empty}", str(tmp_path)) for arg in argv]
    assert evaluate_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_trainer_scores_what_it_publishes(tmp_path, small_fashion_mnist):
    from trainer_service.config import TrainerConfig

    config = TrainerConfig(store=str(tmp_path), dataset=str(small_fashion_mnist), dataset_limit=256, batch_size=32,
                           steps=4, publish_every=4, log_every=2, grid_size=2, seed=1, allow_download=False,
                           evaluate=True, eval_samples=100).validate()
    Trainer(config, ProgressTracker(), threading.Event()).run()  # a finished run waits for its last scores
    scores = store_layout.read_metadata(tmp_path, 4).scores
    assert scores["num_samples"] == 100 and scores["fid"] > 0
