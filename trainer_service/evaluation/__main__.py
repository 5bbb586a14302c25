"""Trains (or loads) the Fashion-MNIST judge and prints its accuracy and the real-data floor.

    python -m trainer_service.evaluation --cache-dir /tmp/store --floor-size 10000
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from trainer_service.evaluation import (
    EvalSettings, JudgeConfig, build_reference, floor_metrics, judge_dir, load_or_train_judge,
    uint8_to_judge_input,
)
from trainer_service.data import FASHION_MNIST_CLASSES, load_idx_folder


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m trainer_service.evaluation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--cache-dir", type=Path, required=True, help="store root; judges/ goes here")
    p.add_argument("--epochs", type=int, default=JudgeConfig.epochs)
    p.add_argument("--floor-size", type=int, default=10000,
                   help="real train images scored against the 10k test split")
    args = p.parse_args()
    if not (args.data_dir / "train-images-idx3-ubyte.gz").is_file():
        p.error(f"--data-dir {args.data_dir} holds no Fashion-MNIST IDX files")
    if not 1 <= args.epochs <= 100:
        p.error("--epochs must be in [1, 100]")
    if not 10 <= args.floor_size <= 60000:
        p.error("--floor-size must be in [10, 60000]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    train = load_idx_folder(args.data_dir, split="train")
    test = load_idx_folder(args.data_dir, split="t10k")
    train_x, train_y, test_x, test_y = train.images, train.labels, test.images, test.labels
    train_x, test_x = uint8_to_judge_input(train_x), uint8_to_judge_input(test_x)
    config = JudgeConfig(epochs=args.epochs)
    start = time.monotonic()
    judge = load_or_train_judge(args.cache_dir, "fashion-mnist", train_x, train_y, test_x, test_y,
                                FASHION_MNIST_CLASSES, config)
    print(f"judge {judge_dir(args.cache_dir, 'fashion-mnist', judge.version)} "
          f"ready in {time.monotonic() - start:.1f}s (trained in {judge.info.train_seconds}s), "
          f"test accuracy {judge.info.test_accuracy:.4f}")

    # The floor evaluate_images reports beside every score: a seeded train sample vs test.
    start = time.monotonic()
    settings = EvalSettings()
    reference = build_reference(judge, test_x, test_y, settings)
    floor = floor_metrics(judge, train_x, reference, args.floor_size, settings)
    print(f"floor ({args.floor_size} train vs {len(test_x)} test) in "
          f"{time.monotonic() - start:.1f}s; judge accuracy on test {reference.judge_accuracy:.4f}")
    print(json.dumps(floor, indent=2))

if __name__ == "__main__":
    main()
