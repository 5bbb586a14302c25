"""Requests from the Trainer gRPC service to the training loop, carried out between two steps.

The servicer only files a request and waits for its answer; the loop, which owns the models, does the
work at its next step boundary, so a checkpoint never catches half an update. Checking for requests is a
few attribute reads per step.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future


@dataclasses.dataclass(frozen=True)
class Published:
    """A step that is checkpointed and published as `model_version`."""

    step: int
    model_version: int


class TrainerNotRunning(Exception):
    """The training loop has ended, so nobody will carry a request out."""


class ControlRequests:
    def __init__(self, stop: threading.Event, publish_every: int) -> None:
        self.stop = stop
        self.publish_every = publish_every  # read by the loop every step; an int swap is atomic
        self._lock = threading.Lock()
        self._checkpoint_waiters: list[Future[Published]] = []
        self._final_waiters: list[Future[Published]] = []
        self._closed = False

    def request_checkpoint(self) -> Future[Published]:
        """The answer arrives once the loop has checkpointed and published its current step."""
        return self._file(self._checkpoint_waiters)

    def request_stop(self) -> Future[Published]:
        """Graceful stop; the answer is the final checkpointed and published step."""
        final = self._file(self._final_waiters)
        self.stop.set()
        return final

    def set_publish_every(self, steps: int) -> int:
        """Returns the previous interval."""
        assert steps > 0, steps
        with self._lock:
            previous, self.publish_every = self.publish_every, steps
        return previous

    def checkpoint_requested(self) -> bool:
        return bool(self._checkpoint_waiters)

    def answer_checkpoint_requests(self, published: Published) -> None:
        with self._lock:
            waiters, self._checkpoint_waiters = self._checkpoint_waiters, []
        for waiter in waiters:
            waiter.set_result(published)

    def close(self, final: Published | None) -> None:
        """The loop has ended at `final` (None: it failed): answers every open request; later ones
        raise TrainerNotRunning."""
        with self._lock:
            self._closed = True
            waiters = self._checkpoint_waiters + self._final_waiters
            self._checkpoint_waiters, self._final_waiters = [], []
        for waiter in waiters:
            if final is None:
                waiter.set_exception(TrainerNotRunning("training failed"))
            else:
                waiter.set_result(final)

    def _file(self, waiters: list[Future[Published]]) -> Future[Published]:
        with self._lock:
            if self._closed:
                raise TrainerNotRunning("training has ended")
            waiter: Future[Published] = Future()
            waiters.append(waiter)
            return waiter
