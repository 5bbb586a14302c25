"""The sampler restarts (graceful stop, then a crash) while clients keep calling it."""

from __future__ import annotations

import collections
import json
import signal
import threading
import time

import grpc
import pytest

from client import GanServiceError, SamplerClient
from protos.gan.v1 import sampler_pb2
from tests.conftest import free_port, publish_tiny_generator
from tests.faults.processes import sampler_stub, served_version, wait_until

pytestmark = pytest.mark.slow

MAX_CALLS = 5000  # per client: a bound in case the stop signal never comes


def retrying_channel_options(attempts: int = 5) -> list[tuple[str, object]]:
    """gRPC's own retries (a service-config retry policy) for UNAVAILABLE, and reconnect backoff capped at a
    second so a channel notices a restarted server quickly. SamplerClient has no hook for these yet."""
    policy = {"maxAttempts": attempts, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE"]}
    config = {"methodConfig": [{"name": [{"service": "gan.v1.Sampler"}], "retryPolicy": policy}]}
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config)),
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000)]


class CallingClient(threading.Thread):
    """Calls Generate in a loop and records each outcome: the status code name, or OK and the time."""

    def __init__(self, call) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.stop = threading.Event()
        self.outcomes: list[tuple[float, str]] = []

    def run(self) -> None:
        for _ in range(MAX_CALLS):
            if self.stop.is_set():
                return
            try:
                self.call()
                outcome = "OK"
            except grpc.RpcError as error:
                outcome = error.code().name
            except GanServiceError as error:
                outcome = error.code.name
            self.outcomes.append((time.monotonic(), outcome))
            time.sleep(0.02)

    def answered_since(self, moment: float) -> int:
        return sum(1 for when, outcome in self.outcomes if when > moment and outcome == "OK")


def test_clients_ride_through_sampler_restarts_seeing_only_unavailable(services, tmp_path):
    store = tmp_path / "store"
    publish_tiny_generator(store, 1, architecture="dense")
    port = free_port()
    sampler = services.sampler(store, port=port)
    wait_until(lambda: served_version(sampler_stub(sampler.target)) == 1, 120, "version 1", sampler)

    plain = SamplerClient(sampler.target, timeout=15)  # the library client as it is: no retries
    retrying = sampler_stub(sampler.target, retrying_channel_options())
    clients = [CallingClient(lambda: plain.generate(2, image_format="raw")),
               CallingClient(lambda: retrying.Generate(sampler_pb2.GenerateRequest(count=2), timeout=15))]
    for client in clients:
        client.start()
    try:
        for stop_signal, expected_exit in ((signal.SIGTERM, 0), (signal.SIGKILL, -signal.SIGKILL)):
            wait_until(lambda: all(c.answered_since(0) for c in clients), 60, "both clients to be answered")
            assert sampler.kill(stop_signal) == expected_exit
            sampler = services.sampler(store, port=port)
            restarted = time.monotonic()
            wait_until(lambda: all(c.answered_since(restarted) >= 3 for c in clients), 180,
                       f"both clients to be answered again after {stop_signal.name}", sampler)
    finally:
        for client in clients:
            client.stop.set()
            client.join(timeout=60)
    for name, client in zip(("plain SamplerClient", "retrying channel"), clients):
        codes = collections.Counter(outcome for _, outcome in client.outcomes)
        print(f"{name}: {dict(codes)}")
        assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    plain.close()
