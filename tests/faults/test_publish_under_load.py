"""New versions published while clients keep calling: no failed call, versions only move forward."""

from __future__ import annotations

import threading

import grpc
import pytest

from protos.gan.v1 import sampler_pb2
from tests.conftest import publish_tiny_generator
from tests.faults.processes import copy_version, sampler_stub, served_version, wait_until

pytestmark = pytest.mark.slow

CLIENTS = 4
MAX_CALLS_PER_CLIENT = 5000  # a bound in case the stop signal never comes


def test_publishing_during_a_load_test_fails_no_call_and_versions_move_forward(services, tmp_path):
    store = tmp_path / "store"
    publish_tiny_generator(store, 1, architecture="dense")
    sampler = services.sampler(store)
    wait_until(lambda: served_version(sampler_stub(sampler.target)) == 1, 120, "version 1", sampler)

    stop = threading.Event()
    seen: list[list[int]] = [[] for _ in range(CLIENTS)]
    failures: list[str] = []

    def client(versions: list[int]) -> None:
        stub = sampler_stub(sampler.target)  # a channel of its own, as separate clients have
        for _ in range(MAX_CALLS_PER_CLIENT):
            if stop.is_set():
                return
            try:
                response = stub.Generate(sampler_pb2.GenerateRequest(count=4), timeout=30)
            except grpc.RpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
                continue
            if len(response.images) != 4:
                failures.append(f"{len(response.images)} images for 4")
            versions.append(response.model_version)

    threads = [threading.Thread(target=client, args=(versions,)) for versions in seen]
    for thread in threads:
        thread.start()
    try:
        for version in (2, 3, 4):
            copy_version(store, 1, version)
            # every client must have been answered by the new version before the next is published
            wait_until(lambda: all(v and v[-1] == version for v in seen), 120, f"clients to get version {version}",
                       sampler)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    for versions in seen:
        assert versions == sorted(versions), "a client saw the version go backwards"
        assert set(versions) == {1, 2, 3, 4}
