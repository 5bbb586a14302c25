"""Version unloading that waits for in-flight requests, and graceful shutdown of a real process."""

import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

from gan_common.images import latents_for_seed
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from sampler_service.registry import ON_DISK, UNLOADING, ModelRegistry
from tests.conftest import REPO_ROOT, free_port, publish_tiny_generator, wait_for_version


def state_of(registry: ModelRegistry, version: int) -> tuple[str, int]:
    state = next(s for s in registry.version_states() if s.version == version)
    return state.state, state.in_flight


def test_an_evicted_version_stays_until_its_in_flight_requests_finish(tmp_path):
    publish_tiny_generator(tmp_path, 1, seed=1)
    publish_tiny_generator(tmp_path, 2, seed=2)
    registry = ModelRegistry(tmp_path, max_loaded=1)
    assert registry.refresh(preload=False).version == 2
    pinned = registry.acquire(1)  # a request pinning version 1: loaded on demand, over the limit of 1
    assert state_of(registry, 1) == (UNLOADING, 1) and registry.loaded_count() == 2
    before = pinned.generate(latents_for_seed(0, 2, 100))  # still answers its request
    again = registry.acquire(1)  # pinned again before the first request finished: not loaded twice
    assert again is pinned and state_of(registry, 1) == (UNLOADING, 2)
    registry.release(again)
    publish_tiny_generator(tmp_path, 3, seed=3)
    registry.refresh(preload=False)  # serving 3 evicts the least recently used: 2 (idle, freed at once)
    assert state_of(registry, 2) == (ON_DISK, 0)
    registry.refresh(preload=False)
    assert registry.serving().version == 3
    assert state_of(registry, 1) == (UNLOADING, 1)  # 1 is in flight, so it waits
    np.testing.assert_array_equal(pinned.generate(latents_for_seed(0, 2, 100)), before)
    registry.release(pinned)
    assert state_of(registry, 1) == (ON_DISK, 0) and registry.loaded_count() == 1


def refused_soon(port: int) -> grpc.StatusCode:
    """The status of the first new call that the server refuses (it accepts them until its signal
    handler has run)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            sampler_pb2_grpc.SamplerStub(grpc.insecure_channel(f"127.0.0.1:{port}")).Generate(
                sampler_pb2.GenerateRequest(count=1), timeout=30)
        except grpc.RpcError as error:
            return error.code()
        time.sleep(0.05)
    raise AssertionError("new calls were still accepted 60 s after SIGTERM")


def test_sigterm_finishes_the_stream_in_flight_refuses_new_work_and_exits_0(tmp_path):
    publish_tiny_generator(tmp_path, 1)
    port = free_port()
    log = (tmp_path / "sampler.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "sampler_service", "--store", str(tmp_path), "--port",
                                str(port), "--shutdown-grace-seconds", "120", "--max-stream-count", "4000"],
                               cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        stub = sampler_pb2_grpc.SamplerStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        wait_for_version(stub, 1, timeout=120)
        stream = stub.GenerateStream(sampler_pb2.GenerateStreamRequest(count=4000, seed=1), timeout=300)
        received = len(next(stream).images)
        process.send_signal(signal.SIGTERM)
        # New calls are refused while the stream goes on: UNAVAILABLE, or CANCELLED for one that gRPC
        # had accepted just as shutdown began.
        assert refused_soon(port) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        received += sum(len(piece.images) for piece in stream)
        assert received == 4000
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"shutting down" in (tmp_path / "sampler.log").read_bytes()
