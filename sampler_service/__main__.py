"""python -m sampler_service --store DIR --port P: serve generated images over gRPC."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gan_common.config_cli import ConfigError, describe  # noqa: E402
from sampler_service.config import load_config  # noqa: E402

logger = logging.getLogger("sampler_service")


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logger.info("configuration:\n%s", describe(config))

    from sampler_service.server import SamplerServer

    server = SamplerServer(config)
    try:
        port = server.start()
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logger.info("Sampler service listening on %s:%d", config.host, port)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    logger.info("shutting down: finishing in-flight requests")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
