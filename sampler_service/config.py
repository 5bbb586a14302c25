"""The sampler's configuration: one frozen dataclass; flags and GAN_SAMPLER_* variables come from it."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from gan_common.config_cli import ConfigError, option, parse_config

ENV_PREFIX = "GAN_SAMPLER_"


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    store: str = option("store", "the trainer's store folder; only read, never written")
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0 for all interfaces)")
    port: int = option(50051, "port of the Sampler gRPC service (0: any free port)")
    poll_seconds: float = option(2.0, "how often to look for a newer published version")
    max_count: int = option(256, "the most images one Generate request may ask for")
    max_loaded_versions: int = option(3, "versions kept in memory for requests that pin a version")
    retry_failed_seconds: float = option(30.0, "wait before retrying a version that failed to load")
    workers: int = option(8, "gRPC worker threads")
    log_level: str = option("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def validate(self) -> "SamplerConfig":
        for name in ("poll_seconds", "max_count", "max_loaded_versions", "workers"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, not {self.port}")
        return self


def load_config(argv: Sequence[str] | None = None) -> SamplerConfig:
    config = parse_config(SamplerConfig, argv, ENV_PREFIX,
                          "Serves images from the newest published generator over gRPC.",
                          prog="python -m sampler_service")
    return config.validate()
