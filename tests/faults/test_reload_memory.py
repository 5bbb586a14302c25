"""Fifty hot reloads: the sampler's resident memory stays flat (a resource check, not a timing one)."""

from __future__ import annotations

import pytest

from protos.gan.v1 import sampler_pb2
from tests.conftest import publish_tiny_generator
from tests.faults.processes import copy_version, sampler_stub, served_version, wait_until
from trainer_service.progress import resident_memory_bytes

pytestmark = pytest.mark.slow

RELOADS = 50
WARM_UP = 10  # reloads before the first measurement: caches and allocator arenas fill up
WINDOW = 15  # reloads per measurement window
MiB = 1024 * 1024
# The registry collects garbage after each swap (an unloaded SavedModel is held by reference cycles);
# RSS then stays within about 560-600 MiB with the dense generator. The peaks of two windows 25 reloads
# apart are compared: leaking what one reload holds (measured: 13 MiB without the collection) would add
# over 300 MiB between them.
MAX_GROWTH = 64 * MiB


def test_fifty_reloads_keep_the_sampler_resident_memory_flat(services, tmp_path):
    store = tmp_path / "store"
    publish_tiny_generator(store, 1, architecture="dense")
    sampler = services.sampler(store, "--poll-seconds", "0.05")
    stub = sampler_stub(sampler.target)
    wait_until(lambda: served_version(stub) == 1, 120, "version 1", sampler)

    samples = []
    for version in range(2, RELOADS + 2):
        copy_version(store, 1, version)
        wait_until(lambda: served_version(stub) == version, 60, f"version {version}", sampler)
        assert stub.Generate(sampler_pb2.GenerateRequest(count=4), timeout=30).model_version == version
        samples.append(resident_memory_bytes(sampler.pid))

    first, last = samples[WARM_UP:WARM_UP + WINDOW], samples[-WINDOW:]
    print(f"sampler RSS (MiB) after each reload: {[round(s / MiB) for s in samples]}; peak of reloads "
          f"{WARM_UP + 1}-{WARM_UP + WINDOW}: {max(first) / MiB:.0f}, of the last {WINDOW}: {max(last) / MiB:.0f}")
    assert max(last) - max(first) < MAX_GROWTH
    assert sampler.alive()
