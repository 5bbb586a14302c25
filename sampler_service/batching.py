"""Dynamic batching (NVIDIA Triton's dynamic batcher, TensorFlow Serving's batching parameters): requests
queue here, and a worker thread runs them together in generator forward passes of a few fixed shapes.

Why fixed shapes: CPU kernels (oneDNN) choose their blocking and their split across threads by batch
size, so a latent computed in a batch of 8 may differ in the last bits from the same latent computed in
a batch of 16, and after rounding to uint8 about 1 image in 300 differs in a pixel. At a fixed shape an
image is bit-identical wherever it sits in the batch and whatever the other rows hold (measured on every
architecture we build; tests/sampler/test_batching.py keeps checking it). Loading a version finds the
sizes (16, 32, ... up to `max_batch_size`) that compute every row exactly as 16 does
(loading.verified_pass_shapes); every pass runs at one of them, padded, so a request's images are the
same alone or batched, under light load (passes of 16) or heavy (passes of up to `max_batch_size`).

Memory is bounded: at most `max_queued_images` images wait (beyond it, Overloaded at once); a request
whose deadline passes or whose caller goes away is withdrawn before it is computed.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import threading
import time
from typing import Callable, Sequence

import numpy as np

from sampler_service.loading import LoadedModel, padded
from sampler_service.metrics import SamplerMetrics

logger = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full: the caller should back off and retry."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"{queued} images are queued (limit {limit})")
        self.queued = queued
        self.limit = limit


class Expired(Exception):
    """The job's deadline passed, or its caller cancelled, before it was computed."""


class ShuttingDown(Exception):
    pass


def pass_sizes(count: int, shapes: Sequence[int]) -> list[int]:
    """Forward passes for `count` rows: the largest shape while it fills, then the passes that hold the
    rest with the fewest padded rows (then the fewest passes)."""
    largest = max(shapes)
    full, rest = divmod(count, largest)
    return [largest] * full + list(_passes_for_rest(rest, tuple(shapes)))


@functools.lru_cache(maxsize=4096)
def _passes_for_rest(count: int, shapes: tuple[int, ...]) -> tuple[int, ...]:
    """pass_sizes for fewer rows than the largest shape. Cached: the search takes 0.5 ms for 250 rows,
    and under load nearly every batch asks it for one of a few hundred counts."""
    # best[n]: (rows computed, passes, sizes) for n rows; n < largest, so this table is small
    best: list[tuple[int, int, list[int]]] = [(0, 0, [])]
    for n in range(1, count + 1):
        options = []
        for shape in shapes:
            rows, passes, rest = best[max(n - shape, 0)]
            options.append((rows + shape, passes + 1, [shape, *rest]))
        best.append(min(options, key=lambda option: option[:2]))
    return tuple(sorted(best[count][2], reverse=True))


def run_padded(model: LoadedModel, latents: np.ndarray, labels: np.ndarray | None,
               shapes: int | Sequence[int]) -> np.ndarray:
    """uint8 images (N, H, W, C) for `latents`, computed in forward passes of exactly one of `shapes` rows."""
    count = len(latents)
    images = np.empty((count, *model.image_shape), np.uint8)
    start = 0
    for rows in pass_sizes(count, [shapes] if isinstance(shapes, int) else shapes):
        z = latents[start:start + rows]
        real = len(z)
        images[start:start + real] = model.generate(*padded(z, None if labels is None else labels[start:start + rows],
                                                            rows))[:real]
        start += real
    return images


@dataclasses.dataclass(eq=False)
class Job:
    """One request's images (or one piece of a stream), filled in by one or more forward passes."""

    model: LoadedModel
    latents: np.ndarray
    labels: np.ndarray | None
    deadline: float | None  # time.monotonic(); None: no deadline
    is_cancelled: Callable[[], bool]
    pixels: np.ndarray
    enqueued: float = dataclasses.field(default_factory=time.monotonic)
    first_taken: float | None = None  # time.monotonic() its first rows went to a forward pass
    finished: float | None = None  # and it was done (computed, failed or withdrawn)
    taken: int = 0  # rows handed to a forward pass
    computed: int = 0
    error: BaseException | None = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    # Called once, from whichever thread finishes the job (batcher's lock held): how an asyncio
    # handler hears of it (loop.call_soon_threadsafe) without a thread of its own blocked on `done`.
    on_done: Callable[[], None] | None = None

    @property
    def count(self) -> int:
        return len(self.latents)

    @property
    def queue_seconds(self) -> float | None:
        """Its wait in the queue before its first forward pass (None: never computed)."""
        return None if self.first_taken is None else self.first_taken - self.enqueued

    @property
    def generator_seconds(self) -> float | None:
        """From its first forward pass to its last rows computed (None: never computed)."""
        return None if self.first_taken is None or self.finished is None else self.finished - self.first_taken

    def expired(self, now: float) -> bool:
        return (self.deadline is not None and now >= self.deadline) or self.is_cancelled()


Part = tuple[Job, int, int]  # rows start..stop of a job in one forward pass


class Batcher:
    """Queue plus worker threads (TensorFlow Serving's num_batch_threads; the server runs two, so the
    cores keep computing while one thread's Python work between passes waits for the GIL). `merge=False`
    gives each forward pass to one request only."""

    def __init__(self, max_batch_size: int, max_queue_delay_s: float, max_queued_images: int,
                 metrics: SamplerMetrics, merge: bool = True, threads: int = 1) -> None:
        self.max_batch_size = max_batch_size
        self._delay = max_queue_delay_s
        self._max_queued = max_queued_images
        self._metrics = metrics
        self._merge = merge
        self._queue: collections.deque[Job] = collections.deque()
        self._queued_images = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"sampler-batcher-{i}", daemon=True)
                         for i in range(threads)]

    @property
    def queued_images(self) -> int:
        return self._queued_images

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Fails whatever is still queued with ShuttingDown and ends the worker threads."""
        with self._cond:
            self._stopping = True
            for job in self._queue:
                self._finish_locked(job, ShuttingDown())
            self._queue.clear()
            self._queued_images = 0
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=60)

    def submit(self, model: LoadedModel, latents: np.ndarray, labels: np.ndarray | None,
               deadline: float | None = None, is_cancelled: Callable[[], bool] = lambda: False,
               admit_over_limit: bool = False, on_done: Callable[[], None] | None = None) -> Job:
        """Queues the images; raises Overloaded when they do not fit (unless admit_over_limit, for the
        next piece of a stream already admitted: a stream holds at most two pieces in the queue).
        `on_done` is called when the job is finished (see Job.on_done)."""
        job = Job(model, latents, labels, deadline, is_cancelled,
                  pixels=np.empty((len(latents), *model.image_shape), np.uint8), on_done=on_done)
        with self._cond:
            if self._stopping:
                raise ShuttingDown()
            if not admit_over_limit and self._queued_images + job.count > self._max_queued:
                raise Overloaded(self._queued_images, self._max_queued)
            self._queue.append(job)
            self._queued_images += job.count
            self._cond.notify_all()
        return job

    def result(self, job: Job, timeout: float | None = None) -> np.ndarray:
        """The job's images; raises Expired when `timeout` passes first (the job is withdrawn)."""
        if not job.done.wait(timeout):
            self.withdraw(job, Expired("the deadline passed while the request waited for the generator"))
        if job.error is not None:
            raise job.error
        return job.pixels

    def withdraw(self, job: Job, why: BaseException) -> None:
        """Takes the job's rows not yet computed out of the queue; its waiter gets `why`."""
        with self._cond:
            if job.done.is_set():
                return
            if job in self._queue:
                self._queue.remove(job)
                self._queued_images -= job.count - job.taken
            self._finish_locked(job, why)
            self._metrics.expired.inc()

    def _finish_locked(self, job: Job, error: BaseException | None = None) -> None:
        if job.done.is_set():
            return
        if error is not None and job.error is None:
            job.error = error
        job.finished = time.monotonic()
        job.done.set()
        if job.on_done is not None:
            job.on_done()

    def _work(self) -> None:
        while True:
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                self._run(*batch)
            except Exception:  # the worker must outlive any surprise, or every caller would wait
                logger.exception("batcher error; carrying on")

    def _next_batch(self) -> tuple[LoadedModel, list[Part]] | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                self._drop_expired_locked(now)
                if not self._queue:
                    self._cond.wait()
                    continue
                head = self._queue[0]
                if self._merge and not head.taken:  # the rest of a split request has waited already
                    fire_at = head.enqueued + self._delay
                    # Full, or exactly a pass size (Triton's preferred_batch_size): no padding to save by waiting.
                    shapes, waiting = self._shapes(head.model), self._rows_waiting_locked(head.model)
                    if now < fire_at and waiting < shapes[-1] and waiting not in shapes:
                        self._cond.wait(fire_at - now)
                        continue
                return head.model, self._take_locked(head.model)

    def _drop_expired_locked(self, now: float) -> None:
        for job in [job for job in self._queue if job.expired(now)]:
            self._queue.remove(job)
            self._queued_images -= job.count - job.taken
            self._finish_locked(job, Expired("the deadline passed, or the caller cancelled, before the "
                                             "request reached the generator"))
            self._metrics.expired.inc()

    def _shapes(self, model: LoadedModel) -> tuple[int, ...]:
        """The model's verified forward-pass sizes up to max_batch_size (at least its smallest)."""
        return tuple(s for s in model.pass_shapes if s <= self.max_batch_size) or model.pass_shapes[:1]

    def _rows_waiting_locked(self, model: LoadedModel) -> int:
        return sum(job.count - job.taken for job in self._queue if job.model is model)

    def _take_locked(self, model: LoadedModel) -> list[Part]:
        parts: list[Part] = []
        room = self._shapes(model)[-1]
        now = time.monotonic()
        for job in list(self._queue):
            if room == 0 or (parts and not self._merge):
                break
            if job.model is not model:
                continue
            if job.first_taken is None:
                job.first_taken = now
                self._metrics.queue_wait.observe(job.queue_seconds)
            take = min(room, job.count - job.taken)
            parts.append((job, job.taken, job.taken + take))
            job.taken += take
            room -= take
            self._queued_images -= take
            if job.taken == job.count:
                self._queue.remove(job)
        return parts

    def _run(self, model: LoadedModel, parts: list[Part]) -> None:
        rows = sum(stop - start for _, start, stop in parts)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            latents = np.concatenate([job.latents[start:stop] for job, start, stop in parts])
            labels = None if parts[0][0].labels is None else np.concatenate(
                [job.labels[start:stop] for job, start, stop in parts])  # type: ignore[index]
            pixels = run_padded(model, latents, labels, self._shapes(model))
        except Exception as failure:  # every waiter must hear of it, or it would wait forever
            logger.exception("forward pass of version %d failed", model.version)
            error = failure
        if error is None:
            self._metrics.observe_batch(model.version, rows, len(parts), time.perf_counter() - started)
        with self._cond:
            offset = 0
            for job, start, stop in parts:
                if error is not None:
                    if job in self._queue:
                        self._queue.remove(job)
                        self._queued_images -= job.count - job.taken
                    self._finish_locked(job, error)
                    continue
                job.pixels[start:stop] = pixels[offset:offset + stop - start]
                offset += stop - start
                job.computed += stop - start
                if job.computed == job.count:
                    self._finish_locked(job)
