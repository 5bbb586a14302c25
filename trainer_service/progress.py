"""Training progress shared between the training loop (writer) and the gRPC server (readers)."""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
import time


class TrainerState(enum.IntEnum):  # mirrors gan.v1.TrainerState
    STARTING = 1
    TRAINING = 2
    FINISHED = 3
    FAILED = 4


@dataclasses.dataclass(frozen=True)
class Progress:
    state: TrainerState = TrainerState.STARTING
    step: int = 0
    total_steps: int = 0
    generator_loss: float = 0.0
    discriminator_loss: float = 0.0
    images_per_second: float = 0.0
    eta_seconds: float = 0.0
    last_checkpoint_step: int = 0
    last_published_version: int = 0
    publish_every: int = 0
    resident_memory_bytes: int = 0
    updated_at: float = dataclasses.field(default_factory=time.time)
    message: str = ""


class ProgressTracker:
    """Holds the newest Progress; readers can wait for the next update."""

    def __init__(self) -> None:
        self._progress = Progress()
        self._revision = 0
        self._changed = threading.Condition()

    def update(self, **fields: object) -> Progress:
        with self._changed:
            self._progress = dataclasses.replace(self._progress, updated_at=time.time(), **fields)
            self._revision += 1
            self._changed.notify_all()
            return self._progress

    def snapshot(self) -> tuple[Progress, int]:
        with self._changed:
            return self._progress, self._revision

    def wait_for_update(self, after_revision: int, timeout: float) -> tuple[Progress, int]:
        """Returns as soon as the revision is newer than `after_revision`, or after `timeout`."""
        with self._changed:
            self._changed.wait_for(lambda: self._revision > after_revision, timeout=timeout)
            return self._progress, self._revision


def resident_memory_bytes(pid: int | None = None) -> int:
    """The resident set size of process `pid`, this one by default (Linux /proc); 0 where that is not
    available."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
