"""Builds the sampler's gRPC server: Sampler service, batcher, health checking, reflection and metrics
in one place. The gRPC server is grpc.aio, on an event loop of its own thread; SamplerServer's methods
are plain blocking calls, for __main__ and the tests alike."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Coroutine, TypeVar

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gan_common import security
from protos.gan.v1 import sampler_pb2
from sampler_service import precision
from sampler_service.batching import Batcher
from sampler_service.config import SamplerConfig
from sampler_service.metrics import MetricsHttpServer, SamplerMetrics
from sampler_service.registry import ModelRegistry
from sampler_service.servicer import SamplerServicer, add_to_server

logger = logging.getLogger(__name__)

SERVICE_NAME = sampler_pb2.DESCRIPTOR.services_by_name["Sampler"].full_name
MAX_REQUEST_BYTES = 64 * 1024  # requests are a handful of numbers
T = TypeVar("T")


class _CallEndedFirst(logging.Filter):
    """grpc.aio logs at ERROR, with a traceback, a handler's last send that failed because the call had
    ended meanwhile (its deadline passed, or its caller left, as the handler finished): nothing went
    wrong in the server. One DEBUG line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("ExecuteBatchError raised in core by servicer method"):
            return True
        logger.debug("%s: the call had ended before its last send", record.getMessage())
        return False


logging.getLogger("grpc._cython.cygrpc").addFilter(_CallEndedFirst())


class SamplerServer:
    """The running service: gRPC server, batcher, model registry and its store poller, metrics."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        precision.apply(config.precision)  # before any model loads: pass sizes are verified in it
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
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="sampler-grpc", daemon=True)
        self._loop_thread.start()
        self.health, self.server = self._run(self._build())
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics_http: MetricsHttpServer | None = None

    def _run(self, coroutine: Coroutine[object, object, T]) -> T:
        """Runs a coroutine on the server's event loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _build(self) -> tuple[health_async.HealthServicer, grpc.aio.Server]:
        """The aio server and its services (made on the loop, which they belong to)."""
        health_servicer = health_async.HealthServicer()
        # Beyond `workers` calls in progress, gRPC answers RESOURCE_EXHAUSTED at once instead of queueing
        # without bound.
        interceptor = self.config.interceptor(protected=lambda method: True, asyncio=True)  # None: no credentials
        server = grpc.aio.server(
            maximum_concurrent_rpcs=self.config.workers, interceptors=[interceptor] if interceptor else None,
            options=[("grpc.max_send_message_length", self.config.max_message_bytes),
                     ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        add_to_server(SamplerServicer(self.registry, self.batcher, self.metrics, self.config), server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for service in ("", SERVICE_NAME):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        return health_servicer, server

    def _set_serving(self) -> None:
        async def serving() -> None:
            for service in ("", SERVICE_NAME):
                await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        # from the poller's thread, or start()'s: the health servicer lives on the loop
        if not self._loop.is_closed():  # a load that finished after stop() has nobody to tell
            asyncio.run_coroutine_threadsafe(serving(), self._loop)

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
        self._run(self.server.start())
        if self.registry.refresh(preload=False) is None and self.registry.serving() is None:
            logger.info("no servable version in %s yet; NOT_SERVING until the trainer publishes one",
                        self.registry.store / "models")
        self.registry.start_polling(self.config.poll_seconds)
        return self.port

    def stop(self, grace: float | None = None) -> None:
        """Stops taking requests and lets in-flight ones finish within `grace` seconds (default: the
        configured shutdown grace); then stops the batcher, the poller and the metrics endpoint."""
        grace = self.config.shutdown_grace_seconds if grace is None else grace
        if self._loop.is_closed():
            return
        self._run(self.health.enter_graceful_shutdown())
        self._run(self.server.stop(grace))
        self.batcher.stop()
        self.registry.stop()
        if self._metrics_http:
            self._metrics_http.stop()
        self._run(self._loop.shutdown_default_executor())  # threads of metadata reads and version loads
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=10)
        self._loop.close()
