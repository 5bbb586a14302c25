"""The sampler's configuration: one frozen dataclass; flags and GAN_SAMPLER_* variables come from it."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from gan_common.config_cli import ConfigError, option, parse_config
from gan_common.security import ServerSecurity
from sampler_service.precision import PRECISIONS, PrecisionError, check_supported

ENV_PREFIX = "GAN_SAMPLER_"


@dataclasses.dataclass(frozen=True)
class SamplerConfig(ServerSecurity):
    """Listening, batching and limits; TLS and caller authentication come from ServerSecurity (with a
    token file or a client CA, every Sampler RPC needs credentials)."""

    store: str = option("store", "the trainer's store folder; only read, never written")
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = option(50051, "port of the Sampler gRPC service (0: any free port)")
    poll_seconds: float = option(2.0, "how often to look for a newer published version")
    max_count: int = option(256, "the most images one Generate or Interpolate request may ask for")
    max_stream_count: int = option(100_000, "the most images one GenerateStream request may ask for")
    max_loaded_versions: int = option(3, "versions kept in memory: the newest ones, and those pinned lately")
    retry_failed_seconds: float = option(30.0, "wait before retrying a version that failed to load")
    max_batch_size: int = option(256, "most images per generator forward pass; passes run at 16, 32, ... up "
                                      "to this (padded), at the sizes that give the same images as 16 on "
                                      "this machine, so an image never depends on its batch-mates")
    max_queue_delay_ms: float = option(2.0, "how long the first request of a batch waits for others to fill it")
    batch_threads: int = option(2, "forward passes that may run at once, each on its own thread (two: one "
                                   "computes while the other gathers its batch and hands out its images)")
    precision: str = option("float32", "forward-pass arithmetic: float32 (the images the trainer scored) or "
                                       "bfloat16 (CPUs with bfloat16 instructions, e.g. AMX: about 2x the "
                                       "images/s at large batches; pixels move by about a level of 255)",
                            choices=PRECISIONS)
    batching: bool = option(True, "merge concurrent requests into shared forward passes (off: one request "
                                  "per pass, the baseline of bench/sampler_load.py)")
    max_queued_images: int = option(2048, "images waiting for a forward pass; beyond it requests get "
                                          "RESOURCE_EXHAUSTED at once")
    max_message_bytes: int = option(64 * 1024 * 1024, "largest response message; bigger requests are "
                                                      "refused with a hint to use GenerateStream")
    workers: int = option(128, "the most calls in progress at once (queued or computing); more are refused "
                               "with RESOURCE_EXHAUSTED")
    metrics_port: int | None = option(None, "HTTP port for Prometheus /metrics and /live, /ready "
                                            "(none: off; 0: any free port)")
    shutdown_grace_seconds: float = option(30.0, "on SIGTERM, how long in-flight requests may take to finish")
    log_level: str = option("INFO", "logging level (DEBUG: one line per request)",
                            choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def validate(self) -> "SamplerConfig":
        for name in ("poll_seconds", "max_count", "max_stream_count", "max_loaded_versions", "max_batch_size",
                     "batch_threads", "max_queued_images", "max_message_bytes", "workers"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        for name in ("max_queue_delay_ms", "shutdown_grace_seconds", "retry_failed_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative, not {getattr(self, name)}")
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0..65535, not {value}")
        if self.max_queued_images < max(self.max_count, self.max_batch_size):
            raise ConfigError(f"--max-queued-images ({self.max_queued_images}) must be at least --max-count "
                              f"({self.max_count}) and --max-batch-size ({self.max_batch_size}), or the largest "
                              "request could never be queued")
        try:
            check_supported(self.precision)
        except PrecisionError as error:
            raise ConfigError(str(error)) from None
        self.validate_security(self.host)
        return self


def load_config(argv: Sequence[str] | None = None) -> SamplerConfig:
    config = parse_config(SamplerConfig, argv, ENV_PREFIX,
                          "Serves images from the newest published generator over gRPC.",
                          prog="python -m sampler_service")
    return config.validate()
