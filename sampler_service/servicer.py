"""The Sampler gRPC servicer (grpc.aio): validates, leases the model, hands the forward pass to the batcher.

Handlers never run the generator themselves: they queue latents with the batcher and await them, so
many concurrent calls become few large forward passes. They are coroutines on one event loop, not a
thread each: a request costs no thread hand-offs of its own (the batcher wakes the loop once it is
done), which cut the server's CPU per 16-image request by a fifth under load (README, Sampler). Work
that may block (loading a pinned version, reading metadata from disk) runs on a thread. gRPC cancels a
handler whose caller went away or whose deadline passed; its images leave the queue at once. Every
call is counted and timed for Prometheus and logged as one key=value line at DEBUG level.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import functools
import logging
import time
from typing import AsyncIterator, Callable

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from gan_common import images as image_utils
from gan_common import store as store_layout
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from sampler_service import sampling
from sampler_service.batching import Batcher, Expired, Job, Overloaded, ShuttingDown
from sampler_service.config import SamplerConfig
from sampler_service.loading import LoadedModel
from sampler_service.metrics import SamplerMetrics
from sampler_service.registry import (ModelRegistry, NoModelYet, VersionNotFound, VersionState,
                                      VersionUnloadable)

logger = logging.getLogger(__name__)

SAMPLER_SERVICE = sampler_pb2.DESCRIPTOR.services_by_name["Sampler"]
REQUEST_TYPES = {method.name: getattr(sampler_pb2, method.input_type.name) for method in SAMPLER_SERVICE.methods}
VERSION_STATES = {"ON_DISK": sampler_pb2.VERSION_STATE_ON_DISK, "LOADED": sampler_pb2.VERSION_STATE_LOADED,
                  "UNLOADING": sampler_pb2.VERSION_STATE_UNLOADING, "FAILED": sampler_pb2.VERSION_STATE_FAILED}


@dataclasses.dataclass
class _GeneratorTimes:
    """A call's jobs, summed: seconds queued before their first pass, and from it to their last rows."""

    queue_seconds: float = 0.0
    generator_seconds: float = 0.0
    jobs: int = 0

    def add(self, job: Job) -> None:
        if job.queue_seconds is not None and job.generator_seconds is not None:
            self.queue_seconds += job.queue_seconds
            self.generator_seconds += job.generator_seconds
            self.jobs += 1

    def log_fields(self) -> str:
        if not self.jobs:
            return ""
        return f" queue_ms={self.queue_seconds * 1000:.1f} generator_ms={self.generator_seconds * 1000:.1f}"


# Each call's handler runs in a task of its own, so this holds the current call's times (for its log line);
# None outside a call's handler.
_generator_times: contextvars.ContextVar[_GeneratorTimes | None] = contextvars.ContextVar("generator_times",
                                                                                         default=None)


class CallerGone(Exception):
    """A stream's caller went away while a piece was being sent."""


def _request_fields(request: Message | bytes) -> str:
    """The request's fields that are set, as key=value (for the debug line); bytes that did not parse
    as their size."""
    if isinstance(request, bytes):
        return f"unparsed_bytes={len(request)}"
    return " ".join(f"{field.name}={value}" for field, value in request.ListFields())


def _deadline_passed(context: grpc.aio.ServicerContext) -> bool:
    remaining = context.time_remaining()  # None: the call has no deadline
    return remaining is not None and remaining <= 0


def _failure_status(method: str, error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status a failed handler answers: a RequestError's own, or INTERNAL (logged with its traceback;
    call from the except block)."""
    if isinstance(error, sampling.RequestError):
        return error.code, error.message
    logger.exception("%s failed", method)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}; the server log has the details"


def _parsed(request: Message | bytes, method: str) -> Message:
    """The request message; raw bytes (see add_to_server) are parsed here, so that bytes that are not a
    request get INVALID_ARGUMENT (grpc.aio would answer UNKNOWN and log a traceback)."""
    if not isinstance(request, bytes):
        return request
    request_type = REQUEST_TYPES[method]
    try:
        return request_type.FromString(request)
    except DecodeError as error:
        raise sampling.RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"the request is not a valid {request_type.DESCRIPTOR.full_name}: "
                                    f"{str(error)[:200]}") from None


def _observed(method: str, streaming: bool = False) -> Callable:
    """Counts, times and logs a handler; turns RequestError into its status. A streaming handler writes
    its messages itself and returns the last one (for the log line)."""
    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        async def wrapper(self: "SamplerServicer", request: Message | bytes,
                          context: grpc.aio.ServicerContext) -> object:
            # Each outcome is counted and logged before the caller hears of it.
            started = time.perf_counter()
            _generator_times.set(_GeneratorTimes())
            try:
                request = _parsed(request, method)
                response = await handler(self, request, context)
            except asyncio.CancelledError:  # gRPC ended the call: caller gone or deadline passed
                self._finish(method, grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context)
                             else grpc.StatusCode.CANCELLED, started, request, context, None)
                raise
            except CallerGone:
                self._finish(method, grpc.StatusCode.CANCELLED, started, request, context, None)
                return None
            except Exception as error:
                code, message = _failure_status(method, error)
                self._finish(method, code, started, request, context, None)
                await context.abort(code, message)
            self._finish(method, grpc.StatusCode.OK, started, request, context, response)
            return None if streaming else response
        return wrapper
    return decorate


def _settle(finished: asyncio.Future) -> None:
    if not finished.done():  # a handler cancelled meanwhile cancelled its future
        finished.set_result(None)


class SamplerServicer(sampler_pb2_grpc.SamplerServicer):
    def __init__(self, registry: ModelRegistry, batcher: Batcher, metrics: SamplerMetrics,
                 config: SamplerConfig) -> None:
        self._registry = registry
        self._batcher = batcher
        self._metrics = metrics
        self._config = config

    # --- plumbing -------------------------------------------------------------------------------

    def _finish(self, method: str, code: grpc.StatusCode, started: float, request: Message | bytes,
                context: grpc.aio.ServicerContext, response: object) -> None:
        seconds = time.perf_counter() - started
        self._metrics.observe_rpc(method, code.name, seconds)
        if logger.isEnabledFor(logging.DEBUG):
            served = f" served_version={response.model_version}" if hasattr(response, "model_version") else ""
            logger.debug("rpc method=%s code=%s ms=%.1f%s peer=%s %s%s", method, code.name, seconds * 1000,
                         (_generator_times.get() or _GeneratorTimes()).log_fields(), context.peer(),
                         _request_fields(request), served)

    async def _acquire_in_thread(self, version: int) -> LoadedModel:
        """Leases a version that is not in memory: loading takes seconds, so not on the event loop."""
        loading = asyncio.get_running_loop().run_in_executor(None, self._registry.acquire, version)
        try:
            return await asyncio.shield(loading)
        except asyncio.CancelledError:  # the caller left: the load goes on, and its lease goes back
            loading.add_done_callback(
                lambda done: None if done.cancelled() or done.exception() else self._registry.release(done.result()))
            raise

    @contextlib.asynccontextmanager
    async def _lease(self, version: int | None) -> AsyncIterator[LoadedModel]:
        """The model for a request, held until the request ends (see ModelRegistry)."""
        try:
            model = self._registry.acquire_loaded(version)
            if model is None:
                assert version is not None
                model = await self._acquire_in_thread(version)
        except NoModelYet:
            raise sampling.RequestError(
                grpc.StatusCode.UNAVAILABLE,
                f"no model is served yet: the trainer has not published a version to "
                f"{self._registry.store / 'models'}; retry once it has") from None
        except VersionNotFound:
            available = self._registry.available_versions()
            raise sampling.RequestError(
                grpc.StatusCode.NOT_FOUND,
                f"model version {version} is not published; available: "
                f"{', '.join(map(str, available)) or 'none'}") from None
        except VersionUnloadable as error:
            raise sampling.RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                                        f"model version {version} cannot be loaded: {error}") from None
        try:
            yield model
        finally:
            self._registry.release(model)

    def _submit(self, model: LoadedModel, latents: np.ndarray, labels: np.ndarray | None,
                context: grpc.aio.ServicerContext, admit_over_limit: bool = False) -> tuple[Job, asyncio.Future]:
        """Queues the images; the future is settled (on this loop) when the batcher is done with them."""
        loop = asyncio.get_running_loop()
        finished = loop.create_future()

        def wake() -> None:  # on the batcher's thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, finished)

        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            job = self._batcher.submit(model, latents, labels, deadline, admit_over_limit=admit_over_limit,
                                       on_done=wake)
        except Overloaded as error:
            raise sampling.RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the sampler is overloaded: {error.queued} images are waiting for the generator (limit "
                f"{error.limit}); retry after a short backoff") from None
        except ShuttingDown:
            raise sampling.RequestError(grpc.StatusCode.UNAVAILABLE,
                                        "the sampler is shutting down; retry on another replica") from None
        return job, finished

    async def _wait(self, job: Job, finished: asyncio.Future, context: grpc.aio.ServicerContext) -> np.ndarray:
        """The job's images. A handler cancelled meanwhile (caller gone, deadline passed) takes its
        images out of the queue."""
        try:
            await finished
        except asyncio.CancelledError:
            self._batcher.withdraw(job, Expired("the call ended while the request waited for the generator"))
            raise
        times = _generator_times.get()
        if times is not None:
            times.add(job)
        try:
            return self._batcher.result(job)
        except Expired as error:
            code = grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context) else grpc.StatusCode.CANCELLED
            raise sampling.RequestError(code, str(error)) from None
        except ShuttingDown:
            raise sampling.RequestError(grpc.StatusCode.UNAVAILABLE,
                                        "the sampler is shutting down; retry on another replica") from None

    async def _compute(self, model: LoadedModel, latents: np.ndarray, labels: np.ndarray | None,
                       context: grpc.aio.ServicerContext) -> np.ndarray:
        return await self._wait(*self._submit(model, latents, labels, context), context)

    # --- RPCs -------------------------------------------------------------------------------------

    @_observed("Generate")
    async def Generate(self, request: sampler_pb2.GenerateRequest, context: grpc.aio.ServicerContext
                       ) -> sampler_pb2.GenerateResponse:
        params = sampling.validate_generate(request, self._config.max_count)
        async with self._lease(params.version) as model:
            labels = sampling.resolve_labels(request, params.seed, params.count, model.version,
                                             model.metadata.num_classes, model.metadata.class_names)
            sampling.check_response_size(params.count, model.image_shape, self._config.max_message_bytes, True)
            latents = image_utils.latents_for_seed(params.seed, params.count, model.latent_dim)
            pixels = await self._compute(model, latents, labels, context)
        height, width, channels = model.image_shape
        return sampler_pb2.GenerateResponse(
            images=sampling.encode_images(pixels, params.image_format), model_version=model.version,
            seed=params.seed, format=params.image_format, height=height, width=width, channels=channels,
            class_indices=[] if labels is None else labels.tolist())

    @_observed("GenerateStream", streaming=True)
    async def GenerateStream(self, request: sampler_pb2.GenerateStreamRequest, context: grpc.aio.ServicerContext
                             ) -> sampler_pb2.GenerateStreamResponse | None:
        params = sampling.validate_generate(request, self._config.max_stream_count)
        async with self._lease(params.version) as model:
            labels = sampling.resolve_labels(request, params.seed, params.count, model.version,
                                             model.metadata.num_classes, model.metadata.class_names)
            piece = model.pass_shapes[0]  # the smallest pass: the first images come soonest
            sampling.check_response_size(min(piece, params.count), model.image_shape,
                                         self._config.max_message_bytes, False)
            pieces = image_utils.latent_batches(params.seed, params.count, model.latent_dim, piece)
            height, width, channels = model.image_shape
            pending: collections.deque = collections.deque()
            last = None

            def submit_next(start: int) -> None:
                latents = next(pieces, None)
                if latents is not None:
                    piece_labels = None if labels is None else labels[start:start + len(latents)]
                    pending.append((start, *self._submit(model, latents, piece_labels, context,
                                                         admit_over_limit=start > 0)))

            try:
                submit_next(0)
                submit_next(piece)  # one piece computes while the previous one is sent: flow control
                while pending:      # (a slow reader holds up the write) keeps at most two pieces in memory
                    start, job, finished = pending.popleft()
                    pixels = await self._wait(job, finished, context)
                    submit_next(start + 2 * piece)
                    last = sampler_pb2.GenerateStreamResponse(
                        images=sampling.encode_images(pixels, params.image_format), first_index=start,
                        model_version=model.version, seed=params.seed, format=params.image_format,
                        height=height, width=width, channels=channels,
                        class_indices=[] if labels is None else labels[start:start + len(pixels)].tolist())
                    try:
                        await context.write(last)
                    except grpc.aio.InternalError:  # the call is over: the caller went away
                        raise CallerGone() from None
            finally:  # the caller left or failed: its next piece is not computed
                for _, job, _ in pending:
                    self._batcher.withdraw(job, Expired("the stream ended"))
        return last

    @_observed("Interpolate")
    async def Interpolate(self, request: sampler_pb2.InterpolateRequest, context: grpc.aio.ServicerContext
                          ) -> sampler_pb2.InterpolateResponse:
        params = sampling.validate_interpolate(request, self._config.max_count)
        async with self._lease(params.version) as model:
            label = sampling.resolve_labels(request, params.seed_from, 1, model.version,
                                            model.metadata.num_classes, model.metadata.class_names)
            labels = None if label is None else np.repeat(label, params.steps)
            sampling.check_response_size(params.steps, model.image_shape, self._config.max_message_bytes, False)
            ends = [image_utils.latents_for_seed(seed, 1, model.latent_dim)[0]
                    for seed in (params.seed_from, params.seed_to)]
            latents = sampling.interpolate_latents(*ends, params.steps, params.spherical)
            pixels = await self._compute(model, latents, labels, context)
        height, width, channels = model.image_shape
        return sampler_pb2.InterpolateResponse(
            images=sampling.encode_images(pixels, params.image_format), model_version=model.version,
            format=params.image_format, height=height, width=width, channels=channels,
            class_indices=[] if labels is None else labels.tolist())

    @_observed("GetModelInfo")
    async def GetModelInfo(self, request: sampler_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
                           ) -> sampler_pb2.GetModelInfoResponse:
        version = sampling.validate_version(request.HasField("model_version"), request.model_version)
        async with self._lease(version) as model:
            pass
        return sampler_pb2.GetModelInfoResponse(info=await asyncio.to_thread(self._model_info, model))

    def _model_info(self, model: LoadedModel) -> sampler_pb2.ModelInfo:
        """The model's metadata as on disk now (the trainer adds scores after publishing)."""
        try:
            meta = store_layout.read_metadata(self._registry.store, model.version)
        except store_layout.MetadataError:
            meta = model.metadata
        height, width, channels = model.image_shape
        info = sampler_pb2.ModelInfo(
            model_version=model.version, training_step=meta.training_step, height=height, width=width,
            channels=channels, latent_dim=meta.latent_dim, dataset=meta.dataset,
            architecture=meta.architecture, available_versions=self._registry.available_versions(),
            metadata_json=meta.to_json(), class_names=list(meta.class_names), conditional=meta.num_classes > 0,
            scores=meta.scores, compute_precision=self._config.precision)
        if meta.published_at:
            info.published_at.FromJsonString(meta.published_at.replace("+00:00", "Z"))
        return info

    @_observed("ListVersions")
    async def ListVersions(self, request: sampler_pb2.ListVersionsRequest, context: grpc.aio.ServicerContext
                           ) -> sampler_pb2.ListVersionsResponse:
        states = await asyncio.to_thread(self._registry.version_states)  # reads every version's metadata
        return sampler_pb2.ListVersionsResponse(versions=[_version_status(s) for s in states])


def add_to_server(servicer: SamplerServicer, server: grpc.aio.Server) -> None:
    """add_SamplerServicer_to_server, except that requests reach the handlers as bytes, parsed by
    `_observed` (see `_parsed`)."""
    handlers = {}
    for method in SAMPLER_SERVICE.methods:
        response_type = getattr(sampler_pb2, method.output_type.name)
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(getattr(servicer, method.name), request_deserializer=None,
                                     response_serializer=response_type.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SAMPLER_SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SAMPLER_SERVICE.full_name, handlers)


def _version_status(state: VersionState) -> sampler_pb2.VersionStatus:
    status = sampler_pb2.VersionStatus(model_version=state.version, state=VERSION_STATES[state.state],
                                       serving=state.serving, in_flight_requests=state.in_flight, error=state.error)
    meta = state.metadata
    if meta is not None:
        status.training_step = meta.training_step
        status.scores.update(meta.scores)
        status.architecture = meta.architecture
        status.dataset = meta.dataset
        status.conditional = meta.num_classes > 0
        if meta.published_at:
            status.published_at.FromJsonString(meta.published_at.replace("+00:00", "Z"))
    return status
