"""The Sampler gRPC servicer: validates, leases the model, hands the forward pass to the batcher.

Handlers never run the generator themselves: they queue latents with the batcher and wait, so many
concurrent calls become few large forward passes. Every call is counted and timed for Prometheus and
logged as one key=value line at DEBUG level.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import time
from typing import Callable, Iterator

import grpc
import numpy as np
from google.protobuf.message import Message

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

WAIT_SLICE_SECONDS = 1.0  # how often a waiting handler checks that its caller is still there

VERSION_STATES = {"ON_DISK": sampler_pb2.VERSION_STATE_ON_DISK, "LOADED": sampler_pb2.VERSION_STATE_LOADED,
                  "UNLOADING": sampler_pb2.VERSION_STATE_UNLOADING, "FAILED": sampler_pb2.VERSION_STATE_FAILED}


def _request_fields(request: Message) -> str:
    """The request's fields that are set, as key=value (for the debug line)."""
    return " ".join(f"{field.name}={value}" for field, value in request.ListFields())


def _failure_status(method: str, error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status a failed handler answers: a RequestError's own, or INTERNAL (logged with its traceback;
    call from the except block)."""
    if isinstance(error, sampling.RequestError):
        return error.code, error.message
    logger.exception("%s failed", method)
    return grpc.StatusCode.INTERNAL, f"internal error in {method}; the server log has the details"


def _observed(method: str) -> Callable:
    """Counts, times and logs a unary handler; turns RequestError into its status."""
    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(self: "SamplerServicer", request: Message, context: grpc.ServicerContext) -> object:
            started, code, response = time.perf_counter(), grpc.StatusCode.OK, None
            try:
                response = handler(self, request, context)
                return response
            except Exception as error:
                code, message = _failure_status(method, error)
                context.abort(code, message)
            finally:
                self._finish(method, code, started, request, context, response)
        return wrapper
    return decorate


def _observed_stream(method: str) -> Callable:
    """The same for a server-streaming handler; a caller that goes away counts as CANCELLED."""
    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(self: "SamplerServicer", request: Message, context: grpc.ServicerContext) -> Iterator:
            started, code, last = time.perf_counter(), grpc.StatusCode.OK, None
            try:
                for last in handler(self, request, context):
                    yield last
            except GeneratorExit:  # the caller went away
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as error:
                code, message = _failure_status(method, error)
                context.abort(code, message)
            finally:
                self._finish(method, code, started, request, context, last)
        return wrapper
    return decorate


class SamplerServicer(sampler_pb2_grpc.SamplerServicer):
    def __init__(self, registry: ModelRegistry, batcher: Batcher, metrics: SamplerMetrics,
                 config: SamplerConfig) -> None:
        self._registry = registry
        self._batcher = batcher
        self._metrics = metrics
        self._config = config

    # --- plumbing -------------------------------------------------------------------------------

    def _finish(self, method: str, code: grpc.StatusCode, started: float, request: Message,
                context: grpc.ServicerContext, response: object) -> None:
        seconds = time.perf_counter() - started
        self._metrics.observe_rpc(method, code.name, seconds)
        if logger.isEnabledFor(logging.DEBUG):
            served = f" served_version={response.model_version}" if hasattr(response, "model_version") else ""
            logger.debug("rpc method=%s code=%s ms=%.1f peer=%s %s%s", method, code.name, seconds * 1000,
                         context.peer(), _request_fields(request), served)

    @contextlib.contextmanager
    def _lease(self, version: int | None) -> Iterator[LoadedModel]:
        """The model for a request, held until the request ends (see ModelRegistry)."""
        try:
            model = self._registry.acquire(version)
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
                context: grpc.ServicerContext, admit_over_limit: bool = False) -> Job:
        deadline = time.monotonic() + context.time_remaining()
        try:
            return self._batcher.submit(model, latents, labels, deadline, lambda: not context.is_active(),
                                        admit_over_limit)
        except Overloaded as error:
            raise sampling.RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the sampler is overloaded: {error.queued} images are waiting for the generator (limit "
                f"{error.limit}); retry after a short backoff") from None
        except ShuttingDown:
            raise sampling.RequestError(grpc.StatusCode.UNAVAILABLE,
                                        "the sampler is shutting down; retry on another replica") from None

    def _wait(self, job: Job, context: grpc.ServicerContext) -> np.ndarray:
        """The job's images. Waits in slices, so a caller that went away or ran out of time frees this
        thread and takes its images out of the queue."""
        while not job.done.wait(min(WAIT_SLICE_SECONDS, context.time_remaining())):
            if not context.is_active() or context.time_remaining() <= 0:
                self._batcher.withdraw(job, Expired("the deadline passed while the request waited for the "
                                                    "generator"))
        try:
            return self._batcher.result(job)
        except Expired as error:
            code = (grpc.StatusCode.DEADLINE_EXCEEDED if context.time_remaining() <= 0
                    else grpc.StatusCode.CANCELLED)
            raise sampling.RequestError(code, str(error)) from None
        except ShuttingDown:
            raise sampling.RequestError(grpc.StatusCode.UNAVAILABLE,
                                        "the sampler is shutting down; retry on another replica") from None

    def _compute(self, model: LoadedModel, latents: np.ndarray, labels: np.ndarray | None,
                 context: grpc.ServicerContext) -> np.ndarray:
        return self._wait(self._submit(model, latents, labels, context), context)

    # --- RPCs -------------------------------------------------------------------------------------

    @_observed("Generate")
    def Generate(self, request: sampler_pb2.GenerateRequest, context: grpc.ServicerContext
                 ) -> sampler_pb2.GenerateResponse:
        params = sampling.validate_generate(request, self._config.max_count)
        with self._lease(params.version) as model:
            labels = sampling.resolve_labels(request, params.seed, params.count, model.version,
                                             model.metadata.num_classes, model.metadata.class_names)
            sampling.check_response_size(params.count, model.image_shape, self._config.max_message_bytes, True)
            latents = image_utils.latents_for_seed(params.seed, params.count, model.latent_dim)
            pixels = self._compute(model, latents, labels, context)
        height, width, channels = model.image_shape
        return sampler_pb2.GenerateResponse(
            images=sampling.encode_images(pixels, params.image_format), model_version=model.version,
            seed=params.seed, format=params.image_format, height=height, width=width, channels=channels,
            class_indices=[] if labels is None else labels.tolist())

    @_observed_stream("GenerateStream")
    def GenerateStream(self, request: sampler_pb2.GenerateStreamRequest, context: grpc.ServicerContext
                       ) -> Iterator[sampler_pb2.GenerateStreamResponse]:
        params = sampling.validate_generate(request, self._config.max_stream_count)
        with self._lease(params.version) as model:
            labels = sampling.resolve_labels(request, params.seed, params.count, model.version,
                                             model.metadata.num_classes, model.metadata.class_names)
            piece = model.pass_shapes[0]  # the smallest pass: the first images come soonest
            sampling.check_response_size(min(piece, params.count), model.image_shape,
                                         self._config.max_message_bytes, False)
            pieces = image_utils.latent_batches(params.seed, params.count, model.latent_dim, piece)
            height, width, channels = model.image_shape
            pending: collections.deque = collections.deque()

            def submit_next(start: int) -> None:
                latents = next(pieces, None)
                if latents is not None:
                    piece_labels = None if labels is None else labels[start:start + len(latents)]
                    pending.append((start, self._submit(model, latents, piece_labels, context,
                                                        admit_over_limit=start > 0)))

            try:
                submit_next(0)
                submit_next(piece)  # one piece computes while the previous one is sent: flow control
                while pending:      # (a slow reader blocks the send) holds at most two pieces in memory
                    start, job = pending.popleft()
                    pixels = self._wait(job, context)
                    submit_next(start + 2 * piece)
                    yield sampler_pb2.GenerateStreamResponse(
                        images=sampling.encode_images(pixels, params.image_format), first_index=start,
                        model_version=model.version, seed=params.seed, format=params.image_format,
                        height=height, width=width, channels=channels,
                        class_indices=[] if labels is None else labels[start:start + len(pixels)].tolist())
            finally:  # the caller left or failed: its next piece is not computed
                for _, job in pending:
                    self._batcher.withdraw(job, Expired("the stream ended"))

    @_observed("Interpolate")
    def Interpolate(self, request: sampler_pb2.InterpolateRequest, context: grpc.ServicerContext
                    ) -> sampler_pb2.InterpolateResponse:
        params = sampling.validate_interpolate(request, self._config.max_count)
        with self._lease(params.version) as model:
            label = sampling.resolve_labels(request, params.seed_from, 1, model.version,
                                            model.metadata.num_classes, model.metadata.class_names)
            labels = None if label is None else np.repeat(label, params.steps)
            sampling.check_response_size(params.steps, model.image_shape, self._config.max_message_bytes, False)
            ends = [image_utils.latents_for_seed(seed, 1, model.latent_dim)[0]
                    for seed in (params.seed_from, params.seed_to)]
            latents = sampling.interpolate_latents(*ends, params.steps, params.spherical)
            pixels = self._compute(model, latents, labels, context)
        height, width, channels = model.image_shape
        return sampler_pb2.InterpolateResponse(
            images=sampling.encode_images(pixels, params.image_format), model_version=model.version,
            format=params.image_format, height=height, width=width, channels=channels,
            class_indices=[] if labels is None else labels.tolist())

    @_observed("GetModelInfo")
    def GetModelInfo(self, request: sampler_pb2.GetModelInfoRequest, context: grpc.ServicerContext
                     ) -> sampler_pb2.GetModelInfoResponse:
        version = sampling.validate_version(request.HasField("model_version"), request.model_version)
        with self._lease(version) as model:
            pass
        try:  # re-read: the trainer adds scores to metadata.json after publishing
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
        return sampler_pb2.GetModelInfoResponse(info=info)

    @_observed("ListVersions")
    def ListVersions(self, request: sampler_pb2.ListVersionsRequest, context: grpc.ServicerContext
                     ) -> sampler_pb2.ListVersionsResponse:
        return sampler_pb2.ListVersionsResponse(versions=[_version_status(s) for s in self._registry.version_states()])


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
