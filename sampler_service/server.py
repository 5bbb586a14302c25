"""Builds the sampler's gRPC server: Sampler service, batcher, health checking, reflection and metrics
in one place."""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gan_common import security
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from sampler_service import precision
from sampler_service.batching import Batcher
from sampler_service.config import SamplerConfig
from sampler_service.metrics import MetricsHttpServer, SamplerMetrics
from sampler_service.registry import ModelRegistry
from sampler_service.servicer import SamplerServicer

logger = logging.getLogger(__name__)

SERVICE_NAME = sampler_pb2.DESCRIPTOR.services_by_name["Sampler"].full_name
MAX_REQUEST_BYTES = 64 * 1024  # requests are a handful of numbers


class SamplerServer:
    """The running service: gRPC server, batcher, model registry and its store poller, metrics."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        precision.apply(config.precision)  # before any model loads: pass sizes are verified in it
        self.health = health.HealthServicer()
        self.metrics = SamplerMetrics()
        self.registry = ModelRegistry(Path(config.store), config.max_loaded_versions,
                                      config.retry_failed_seconds, on_serving=lambda _: self._set_serving(),
                                      max_batch_size=config.max_batch_size)
        self.batcher = Batcher(config.max_batch_size, config.max_queue_delay_ms / 1000, config.max_queued_images,
                               self.metrics, merge=config.batching, threads=config.batch_threads)
        self.metrics.queue_depth.set_function(lambda: self.batcher.queued_images)
        self.metrics.loaded_versions.set_function(self.registry.loaded_count)
        self.metrics.serving_version.set_function(
            lambda: self.registry.serving().version if self.registry.serving() else 0)  # type: ignore[union-attr]
        # Each request in progress holds a worker thread (it waits for the batcher); beyond `workers`,
        # gRPC answers RESOURCE_EXHAUSTED at once instead of queueing without bound.
        interceptor = config.interceptor(protected=lambda method: True)  # None: no credentials configured
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="sampler-rpc"),
            maximum_concurrent_rpcs=config.workers, interceptors=[interceptor] if interceptor else None,
            options=[("grpc.max_send_message_length", config.max_message_bytes),
                     ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        sampler_pb2_grpc.add_SamplerServicer_to_server(
            SamplerServicer(self.registry, self.batcher, self.metrics, config), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.server)
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics_http: MetricsHttpServer | None = None

    def _set_serving(self) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def start(self) -> int:
        """Binds, starts serving and polling; returns the bound port (config port 0 picks a free one)."""
        try:
            self.port = security.add_port(self.server, f"{self.config.host}:{self.config.port}", self.config)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port} (in use, or not an address here)")
        if self.config.metrics_port is not None:
            try:
                self._metrics_http = MetricsHttpServer(self.metrics, lambda: self.registry.serving() is not None,
                                                       self.config.host, self.config.metrics_port)
            except OSError as error:
                raise OSError(f"cannot serve metrics on {self.config.host}:{self.config.metrics_port}: "
                              f"{error.strerror}") from None
            self.metrics_port = self._metrics_http.start()
            logger.info("Prometheus metrics on http://%s:%d/metrics", self.config.host, self.metrics_port)
        self.batcher.start()
        self.server.start()
        if self.registry.refresh(preload=False) is None and self.registry.serving() is None:
            logger.info("no servable version in %s yet; NOT_SERVING until the trainer publishes one",
                        self.registry.store / "models")
        self.registry.start_polling(self.config.poll_seconds)
        return self.port

    def stop(self, grace: float | None = None) -> None:
        """Stops taking requests and lets in-flight ones finish within `grace` seconds (default: the
        configured shutdown grace); then stops the batcher, the poller and the metrics endpoint."""
        grace = self.config.shutdown_grace_seconds if grace is None else grace
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.batcher.stop()
        self.registry.stop()
        if self._metrics_http:
            self._metrics_http.stop()
