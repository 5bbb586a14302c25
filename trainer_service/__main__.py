"""python -m trainer_service --store DIR ...: train, checkpoint, publish, and serve progress and control
over gRPC."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out

from gan_common.config_cli import ConfigError, describe  # noqa: E402
from trainer_service.config import load_config  # noqa: E402
from trainer_service.data import DatasetError  # noqa: E402

logger = logging.getLogger("trainer_service")


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("tensorflow", "absl"):  # per-save INFO lines that say nothing to a user
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logger.info("configuration:\n%s", describe(config))

    from trainer_service.control import ControlRequests
    from trainer_service.progress import ProgressTracker, TrainerState
    from trainer_service.publish import PublishError
    from trainer_service.server import create_server
    from trainer_service.train import Trainer

    tracker = ProgressTracker()
    stop = threading.Event()
    control = ControlRequests(stop, config.publish_every)
    trainer: Trainer | None = None

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("%s received: checkpointing, publishing and stopping", signal.Signals(signum).name)
        stop.set()  # what the Stop RPC does

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server, port = create_server(tracker, lambda: trainer.run_description if trainer else {},
                                     config.host, config.port, control, config)
    except (OSError, RuntimeError) as error:
        print(f"error: cannot serve the Trainer service on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 2
    logger.info("Trainer service listening on %s:%d", config.host, port)
    try:
        trainer = Trainer(config, tracker, stop, control)
        trainer.run()
    except (ConfigError, DatasetError) as error:
        tracker.update(state=TrainerState.FAILED, message=str(error))
        control.close(None)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PublishError as error:  # the store is full or read-only; the checkpoint written before is intact
        tracker.update(state=TrainerState.FAILED, message=str(error))
        control.close(None)
        print(f"error: {error}. The training state is checkpointed: make room or make the store writable, "
              "then run the same command to resume.", file=sys.stderr)
        return 1
    except Exception as error:
        tracker.update(state=TrainerState.FAILED, message=f"{type(error).__name__}: {error}")
        control.close(None)
        raise
    finally:
        server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
