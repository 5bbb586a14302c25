"""One real sampler and one real trainer for the whole fuzz suite, and the check that they are still
healthy after each test."""

from __future__ import annotations

import re

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.gan.v1 import sampler_pb2
from tests.conftest import publish_tiny_generator
from tests.faults.processes import Service, Services, sampler_stub, served_version, wait_until

MAX_COUNT = 8  # the fuzzed sampler's --max-count: keeps every accepted Generate cheap
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
PUBLISHED = (1, 2)  # 1: unconditional dense generator; 2: class-conditional DCGAN, the one served


class FuzzedServices:
    """The sampler and the trainer under fuzzing; a trainer that a Stop RPC ended is started again."""

    def __init__(self, services: Services, root) -> None:
        self.services = services
        self.sampler_store = root / "sampler-store"
        self.trainer_store = root / "trainer-store"
        publish_tiny_generator(self.sampler_store, 1, architecture="dense")
        publish_tiny_generator(self.sampler_store, 2, architecture="dcgan", class_names=CLASS_NAMES)
        self.sampler = services.sampler(self.sampler_store, "--max-count", str(MAX_COUNT))
        self._trainer: Service | None = None
        wait_until(lambda: served_version(sampler_stub(self.sampler.target)) == 2, 120, "the sampler", self.sampler)

    def trainer(self) -> Service:
        if self._trainer is None or not self._trainer.alive():
            # Never finishes on its own, and never publishes or checkpoints unless an RPC asks.
            self._trainer = self.services.trainer(self.trainer_store, "--steps", "100000000",
                                                  "--publish-every", "100000000", "--checkpoint-every", "100000000",
                                                  "--log-every", "1000")
            wait_until(lambda: health(self._trainer) == health_pb2.HealthCheckResponse.SERVING, 120,
                       "the trainer to answer", self._trainer)
        return self._trainer

    def target(self, service_name: str) -> Service:
        return self.sampler if service_name == "Sampler" else self.trainer()


def health(service: Service) -> int:
    with grpc.insecure_channel(service.target) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def assert_healthy(fuzzed: FuzzedServices) -> None:
    """Both processes alive, SERVING, and a plain request answered as before."""
    sampler = fuzzed.sampler
    assert sampler.alive(), sampler.log_text()[-3000:]
    assert health(sampler) == health_pb2.HealthCheckResponse.SERVING
    response = sampler_stub(sampler.target).Generate(sampler_pb2.GenerateRequest(count=2, seed=1), timeout=30)
    assert response.model_version == 2 and len(response.images) == 2
    trainer = fuzzed._trainer
    if trainer is not None:
        assert trainer.alive() or trainer.process.returncode == 0, trainer.log_text()[-3000:]
        if trainer.alive():
            assert health(trainer) == health_pb2.HealthCheckResponse.SERVING
    for service in (sampler, trainer):
        if service is not None:
            assert unexpected_tracebacks(service.log_text()) == []


def unexpected_tracebacks(log: str) -> list[str]:
    """Log records with a traceback, but for gRPC's own record of a request it could not parse (logged by
    grpc._common with a traceback, at ERROR, before any code of ours runs; the caller gets INTERNAL)."""
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [record for record in records if "Traceback" in record
            and "grpc._common: Exception deserializing message!" not in record]


@pytest.fixture(scope="session")
def fuzzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    services = Services(root)
    try:
        yield FuzzedServices(services, root)
    finally:
        services.stop_all()


@pytest.fixture
def healthy_after(fuzzed):
    """The fuzzed services; after the test, proof they survived it."""
    yield fuzzed
    assert_healthy(fuzzed)
