"""Image quality per minute of compute: trains recipes for the same wall-clock budget and scores them.

    python bench/quality.py                                   # seed-dcgan vs default, 15 min each
    python bench/quality.py --minutes 4 --variant default --variant "default:ema_decay=0"

Each variant is a recipe name, optionally with trainer flags (`name:flag=value,flag=value`). Every
variant trains in its own `python -m trainer_service` process (the product itself) with
--time-budget-seconds, one after the other so none shares the CPU with another. The final published
version (the EMA generator where the recipe has one) is scored by the offline judge of
trainer_service.evaluation on --samples images against the Fashion-MNIST test split; the floor (real
train images against the same test split) is printed beside the scores. Grids land in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

METRICS = [("steps", "steps", "{:.0f}"), ("fid", "FID", "{:.3f}"), ("kid_mean", "KID", "{:.4f}"),
           ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
           ("classes_covered", "classes", "{:.0f}"), ("class_kl", "class KL", "{:.3f}")]


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    """'default:ema_decay=0,batch_size=32,jit_compile' -> (label, recipe, trainer flags); a name without a
    value is a switch (--jit-compile)."""
    recipe, _, overrides = text.partition(":")
    flags = []
    for item in filter(None, overrides.split(",")):
        name, has_value, value = item.partition("=")
        flags += [f"--{name.strip().replace('_', '-')}", *([value.strip()] if has_value else [])]
    return text, recipe, flags


def train_variant(recipe: str, flags: list[str], store: Path, seconds: float, seed: int, log: Path) -> float:
    command = [sys.executable, "-m", "trainer_service", "--store", str(store), "--recipe", recipe,
               "--time-budget-seconds", str(seconds), "--steps", "10000000", "--publish-every", "10000000",
               "--checkpoint-every", "10000000", "--log-every", "200", "--seed", str(seed), "--port", "0",
               "--no-evaluate", *flags]
    started = time.monotonic()
    with log.open("w") as handle:
        subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per variant")
    parser.add_argument("--variant", action="append", help="recipe[:flag=value,...] (repeatable; "
                                                          "default: seed-dcgan and default)")
    parser.add_argument("--samples", type=int, default=10000, help="generated images scored per variant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-output" / "quality")
    parser.add_argument("--keep-stores", action="store_true", help="keep each variant's store")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in (args.variant or ["seed-dcgan", "default"])]
    args.out.mkdir(parents=True, exist_ok=True)

    from gan_common import store as store_layout
    from trainer_service.scoring import VersionScorer

    results = []
    for label, recipe, flags in variants:
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
        store = args.out / "stores" / slug
        shutil.rmtree(store, ignore_errors=True)
        print(f"== {label}: training for {args.minutes:g} min", flush=True)
        wall = train_variant(recipe, flags, store, args.minutes * 60, args.seed, args.out / f"{slug}.log")
        version = store_layout.latest_version(store)
        started = time.monotonic()
        # Exactly what the sampler would serve, scored as the trainer scores; the judge is cached in --out.
        scores = VersionScorer(store, "fashion_mnist", args.samples, args.seed, judge_cache=args.out).score(
            version, write=False)
        print(f"   {version} steps in {wall:.0f}s (process), scored in {time.monotonic() - started:.0f}s", flush=True)
        shutil.copy(store_layout.version_dir(store, version) / store_layout.SAMPLE_GRID_FILE,
                    args.out / f"{slug}_grid.png")
        results.append({"variant": label, "steps": version, **scores})
        if not args.keep_stores:
            shutil.rmtree(store, ignore_errors=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    floor = results[0]["floor"]
    print(f"\nFashion-MNIST, {args.minutes:g} min of training each on this machine, {args.samples} samples, "
          f"judge {results[0]['judge_version'][:12]} (test accuracy {results[0]['judge_accuracy']:.3f})\n")
    print("| variant | " + " | ".join(name for _, name, _ in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for row in results + [{"variant": "floor (real train vs test)", "steps": float("nan"), **floor}]:
        cells = [fmt.format(row[key]) if isinstance(row.get(key), (int, float)) else "" for key, _, fmt in METRICS]
        print(f"| {row['variant']} | " + " | ".join(c.replace("nan", "") for c in cells) + " |")
    if len(results) >= 2:
        print(f"\nFID ratio {results[-1]['variant']} / {results[0]['variant']}: "
              f"{results[-1]['fid'] / results[0]['fid']:.3f}")
    print(f"grids and results.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
