"""Prometheus metrics of one sampler, and the small HTTP server that exposes them with /live and /ready
(as NVIDIA Triton does on its metrics and health endpoints)."""

from __future__ import annotations

import http.server
import logging
import threading
from typing import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

# From half a millisecond: a lone request's queue wait is a fraction of a millisecond, and a pass of 16
# (or a whole call) can take 2 to 5 ms, which a first bucket at 5 ms would not tell apart.
SECONDS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class SamplerMetrics:
    """Every metric lives in this object's own registry, so several servers in one process (tests)
    never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gan_sampler_requests", "Finished RPCs by method and status code",
                                ["method", "code"], registry=r)
        self.latency = Histogram("gan_sampler_request_latency_seconds",
                                 "Call duration in the server: from the call reaching its handler to its answer "
                                 "(gRPC's transport excluded)", ["method"], buckets=SECONDS_BUCKETS, registry=r)
        self.batch_images = Histogram("gan_sampler_batch_size_images",
                                      "Images per batch: requests run together, in one or more forward passes "
                                      "(padding excluded)",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("gan_sampler_batch_requests", "Requests sharing one batch",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.forward_seconds = Histogram("gan_sampler_forward_seconds", "Duration of one batch's forward passes",
                                         buckets=SECONDS_BUCKETS, registry=r)
        self.queue_wait = Histogram("gan_sampler_queue_wait_seconds",
                                    "Time a request's images (or a stream's piece) waited in the queue before "
                                    "their first forward pass began (Triton's queue time)",
                                    buckets=SECONDS_BUCKETS, registry=r)
        self.images = Counter("gan_sampler_images_generated", "Images made by forward passes",
                              ["version"], registry=r)
        self.expired = Counter("gan_sampler_expired_requests",
                               "Requests withdrawn before computing: deadline passed or caller cancelled",
                               registry=r)
        self.queue_depth = Gauge("gan_sampler_queue_depth_images", "Images waiting for a forward pass",
                                 registry=r)
        self.loaded_versions = Gauge("gan_sampler_loaded_versions",
                                     "Model versions in memory (unloading ones included)", registry=r)
        self.serving_version = Gauge("gan_sampler_serving_version",
                                     "The version served to requests that name none (0: none yet)", registry=r)

    def observe_batch(self, version: int, images: int, requests: int, seconds: float) -> None:
        self.batch_images.observe(images)
        self.batch_requests.observe(requests)
        self.forward_seconds.observe(seconds)
        self.images.labels(str(version)).inc(images)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class MetricsHttpServer:
    """GET /metrics (Prometheus text format), /live (200 while the process runs), /ready (200 while a
    model is served, else 503)."""

    def __init__(self, metrics: SamplerMetrics, is_ready: Callable[[], bool], host: str, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._answer(200, metrics.exposition(), prometheus_client.CONTENT_TYPE_LATEST)
                elif path == "/live":
                    self._answer(200, b"live\n")
                elif path == "/ready":
                    ready = is_ready()
                    self._answer(200 if ready else 503, b"ready\n" if ready else b"no model served yet\n")
                else:
                    self._answer(404, b"not found: try /metrics, /live or /ready\n")

            def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                logger.debug("metrics http: " + format, *args)

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
