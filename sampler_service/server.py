"""Builds the sampler's gRPC server: Sampler service, health checking and reflection in one place."""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from sampler_service.config import SamplerConfig
from sampler_service.registry import ModelRegistry
from sampler_service.servicer import SamplerServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = sampler_pb2.DESCRIPTOR.services_by_name["Sampler"].full_name
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_REQUEST_BYTES = 64 * 1024  # requests are a handful of numbers


class SamplerServer:
    """The running service: gRPC server, model registry and its store poller."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self.health = health.HealthServicer()
        self.registry = ModelRegistry(Path(config.store), config.max_loaded_versions,
                                      config.retry_failed_seconds, on_serving=lambda _: self._set_serving())
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="sampler-rpc"),
            options=[("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
                     ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        sampler_pb2_grpc.add_SamplerServicer_to_server(SamplerServicer(self.registry, config.max_count), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.server)
        self.port = 0

    def _set_serving(self) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def start(self) -> int:
        """Binds, starts serving and polling; returns the bound port (config port 0 picks a free one)."""
        try:
            self.port = self.server.add_insecure_port(f"{self.config.host}:{self.config.port}")
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port} (in use, or not an address here)")
        self.server.start()
        if self.registry.refresh() is None and self.registry.serving() is None:
            logger.info("no servable version in %s yet; NOT_SERVING until the trainer publishes one",
                        self.registry.store / "models")
        self.registry.start_polling(self.config.poll_seconds)
        return self.port

    def stop(self, grace: float = 5.0) -> None:
        """Stops taking requests, lets in-flight ones finish within `grace` seconds."""
        self.health.enter_graceful_shutdown()
        self.registry.stop()
        self.server.stop(grace).wait()
