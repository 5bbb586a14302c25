"""On-disk cache of trained judges: ``<cache_dir>/judges/<dataset_name>-<version[:12]>/``.

Each folder holds ``judge.keras`` and ``judge.json`` (a ``JudgeInfo``) and is published by
renaming a finished temporary folder, so a reader never sees half a judge. A folder is never
overwritten: a different config or dataset gives a different version, hence a new folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from trainer_service.evaluation.judge import (
    Judge, JudgeConfig, JudgeInfo, as_judge_input, dataset_fingerprint, judge_version, train_judge,
)

log = logging.getLogger(__name__)

MODEL_FILE = "judge.keras"
INFO_FILE = "judge.json"


def judge_dir(cache_dir: str | Path, dataset_name: str, version: str) -> Path:
    return Path(cache_dir) / "judges" / f"{dataset_name}-{version[:12]}"


def save_judge(judge: Judge, cache_dir: str | Path) -> Path:
    """Publishes ``judge`` under ``cache_dir``; returns its folder (existing one if present)."""
    final = judge_dir(cache_dir, judge.info.dataset_name, judge.version)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; other services read the published judge
        judge.model.save(tmp / MODEL_FILE)
        (tmp / INFO_FILE).write_text(judge.info.to_json())
        os.rename(tmp, final)
    except OSError:
        # Another process published the same version first; theirs is as good as ours.
        if not (final / INFO_FILE).exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_judge(folder: str | Path) -> Judge:
    folder = Path(folder)
    info = JudgeInfo.from_json((folder / INFO_FILE).read_text())
    model = keras.saving.load_model(folder / MODEL_FILE, compile=False)
    return Judge(model, info)


def load_or_train_judge(
    cache_dir: str | Path,
    dataset_name: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: tuple[str, ...],
    config: JudgeConfig = JudgeConfig(),
) -> Judge:
    """Loads the cached judge for exactly this data and config, training and saving it if absent.

    Images are [-1, 1] floats (see ``judge.as_judge_input``); the version hash is computed on
    the canonical float32 arrays, so hashing costs a pass over the data but no training.
    """
    train_x, test_x = as_judge_input(train_images), as_judge_input(test_images)
    train_y = np.asarray(train_labels).astype(np.int64)
    test_y = np.asarray(test_labels).astype(np.int64)
    version = judge_version(
        config, len(class_names), dataset_fingerprint(train_x, train_y, test_x, test_y)
    )
    folder = judge_dir(cache_dir, dataset_name, version)
    if (folder / INFO_FILE).exists():
        log.info("loading cached judge %s", folder)
        return load_judge(folder)
    log.info("no judge at %s; training one (%d epochs)", folder, config.epochs)
    judge = train_judge(train_x, train_y, test_x, test_y, class_names, config, dataset_name)
    assert judge.version == version, "train_judge hashed the data differently"
    save_judge(judge, cache_dir)
    return judge
