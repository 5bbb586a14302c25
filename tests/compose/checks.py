"""Host-side checks for compose_test.sh, through the public client API (no TensorFlow).

    python tests/compose/checks.py images TARGET          # 16 real 28x28 images, reproducible by seed
    python tests/compose/checks.py newer TARGET VERSION   # wait for a version > VERSION, then Generate with it
    python tests/compose/checks.py info TARGET            # the served version and the available ones

Each prints one line of JSON on success, or one FAIL line on stderr and exits 1.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from client import GanServiceError, SamplerClient

IMAGE_SIZE = (28, 28)
NEWER_VERSION_TIMEOUT_SECONDS = 300.0


class CheckFailed(Exception):
    pass


def check_images(target: str, count: int = 16, seed: int = 7) -> dict:
    with SamplerClient(target, timeout=60) as sampler:
        first = sampler.generate(count, seed=seed)
        again = sampler.generate(count, seed=seed, version=first.model_version)
        other = sampler.generate(count, seed=seed + 1, version=first.model_version)
    if len(first.images) != count:
        raise CheckFailed(f"asked for {count} images, got {len(first.images)}")
    sizes = {image.size for image in first.images}
    if sizes != {IMAGE_SIZE}:
        raise CheckFailed(f"expected every image to be {IMAGE_SIZE}, got {sorted(sizes)}")
    if first.seed != seed:
        raise CheckFailed(f"asked for seed {seed}, the response says {first.seed}")
    pixels = np.stack([np.asarray(image, dtype=np.float32) for image in first.images])
    if pixels.std() < 1.0:  # a generator that outputs one flat colour is broken, not early
        raise CheckFailed(f"the images are flat (pixel standard deviation {pixels.std():.3f})")
    if again.encoded != first.encoded:
        raise CheckFailed(f"seed {seed} and version {first.model_version} gave different images twice")
    if other.encoded == first.encoded:
        raise CheckFailed(f"seeds {seed} and {seed + 1} gave the same images")
    return {"model_version": first.model_version, "count": count, "size": list(IMAGE_SIZE), "seed": seed,
            "pixel_mean": round(float(pixels.mean()), 1), "pixel_std": round(float(pixels.std()), 1)}


def wait_for_newer(target: str, version: int) -> dict:
    deadline = time.monotonic() + NEWER_VERSION_TIMEOUT_SECONDS
    with SamplerClient(target, timeout=30) as sampler:
        served = -1
        while served <= version:
            if time.monotonic() > deadline:
                raise CheckFailed(f"the sampler still serves version {served} after "
                                  f"{NEWER_VERSION_TIMEOUT_SECONDS:.0f}s; expected one newer than {version}")
            time.sleep(1)
            try:
                served = sampler.info().model_version
            except GanServiceError:  # restarting, or not serving yet: ask again
                served = -1
        result = sampler.generate(4, seed=1)
    if result.model_version < served:
        raise CheckFailed(f"GetModelInfo says version {served} but Generate used {result.model_version}")
    return {"model_version": result.model_version, "previous": version}


def served_info(target: str) -> dict:
    with SamplerClient(target, timeout=30) as sampler:
        info = sampler.info()
    return {"model_version": info.model_version, "training_step": info.training_step,
            "available_versions": info.available_versions}


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "images":
            result = check_images(argv[1])
        elif len(argv) == 3 and argv[0] == "newer":
            result = wait_for_newer(argv[1], int(argv[2]))
        elif len(argv) == 2 and argv[0] == "info":
            result = served_info(argv[1])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (CheckFailed, GanServiceError) as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
