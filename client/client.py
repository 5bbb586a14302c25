"""Python stubs for the Sampler and Trainer services: typed results, deadlines, one exception type."""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Iterator, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from client.errors import GanServiceError
from gan_common import images as image_utils
from gan_common import security
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc, trainer_pb2, trainer_pb2_grpc

T = TypeVar("T")
FORMATS = {"png": sampler_pb2.IMAGE_FORMAT_PNG, "raw": sampler_pb2.IMAGE_FORMAT_RAW_UINT8}
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclasses.dataclass(frozen=True)
class GenerateResult:
    images: list  # PIL images, or numpy uint8 arrays (H, W, C) with as_numpy=True
    model_version: int
    seed: int
    encoded: list[bytes]  # the bytes as sent (PNG files or raw pixels)
    class_indices: list[int] = dataclasses.field(default_factory=list)  # conditional models only
    first_index: int = 0  # generate_stream: the index of images[0] in the whole request

    def grid(self) -> Image.Image:
        """All images tiled into one picture."""
        arrays = np.stack([np.asarray(i)[:, :, None] if np.asarray(i).ndim == 2 else np.asarray(i)
                           for i in self.images])
        return image_utils.to_pil(image_utils.tile_grid(arrays))


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    model_version: int
    training_step: int
    image_shape: tuple[int, int, int]
    latent_dim: int
    dataset: str
    architecture: str
    published_at: str
    available_versions: list[int]
    metadata: dict
    class_names: list[str] = dataclasses.field(default_factory=list)
    conditional: bool = False
    scores: dict[str, float] = dataclasses.field(default_factory=dict)  # quality scores, once judged
    compute_precision: str = ""  # the server's forward-pass arithmetic: float32 or bfloat16


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One published version as the sampler sees it (SamplerClient.versions)."""

    model_version: int
    training_step: int
    published_at: str
    state: str  # ON_DISK, LOADED, UNLOADING or FAILED
    serving: bool
    in_flight_requests: int
    scores: dict[str, float]
    architecture: str
    dataset: str
    conditional: bool
    error: str = ""


@dataclasses.dataclass(frozen=True)
class TrainerStatus:
    state: str
    step: int
    total_steps: int
    generator_loss: float
    discriminator_loss: float
    images_per_second: float
    eta_seconds: float
    last_checkpoint_step: int
    last_published_version: int
    message: str
    publish_every: int = 0
    resident_memory_bytes: int = 0
    dataset: str = ""
    architecture: str = ""
    strategy: str = ""
    num_replicas: int = 0


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How to reach a secured service: the CA that signed its certificate (TLS), our own certificate
    and key (mutual TLS), a bearer token. Empty: plaintext, anonymous."""

    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    token: str = ""


def _retry_options(retries: int) -> list[tuple[str, object]]:
    """gRPC's own retry policy: UNAVAILABLE calls are retried with backoff, and a lost server is
    re-dialled within a second, so a restart costs callers a short wait instead of an error."""
    if retries <= 0:
        return []
    policy = {"methodConfig": [{"name": [{}], "retryPolicy": {
        "maxAttempts": min(retries + 1, 5), "initialBackoff": "0.1s", "maxBackoff": "1s",
        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}
    return [("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(policy)),
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]


class _Stub:
    def __init__(self, target: str, timeout: float, credentials: Credentials | None = None,
                 retries: int = 0) -> None:
        """`credentials` for TLS / tokens; `retries` (at most 4) retries UNAVAILABLE calls with backoff."""
        self.target = target
        self.timeout = timeout
        credentials = credentials or Credentials()
        self._channel = security.client_channel(target, credentials.tls_ca, credentials.tls_cert,
                                                credentials.tls_key, credentials.token,
                                                _CHANNEL_OPTIONS + _retry_options(retries))

    def _call(self, method: Callable[..., T], request: object, timeout: float | None = None) -> T:
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise GanServiceError.from_rpc_error(error, self.target) from None

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The grpc.health.v1 status name: SERVING, NOT_SERVING, ..."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        response = self._call(stub.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):  # noqa: ANN204
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SamplerClient(_Stub):
    """`SamplerClient("localhost:50051").generate(16, seed=7)`; raises GanServiceError."""

    def __init__(self, target: str = "localhost:50051", timeout: float = 30.0,
                 credentials: Credentials | None = None, retries: int = 0) -> None:
        super().__init__(target, timeout, credentials, retries)
        self._stub = sampler_pb2_grpc.SamplerStub(self._channel)

    def generate(self, count: int, seed: int | None = None, version: int | None = None,
                 image_format: str = "png", as_numpy: bool = False, timeout: float | None = None,
                 label: int | str | None = None) -> GenerateResult:
        """`label` (conditional models): a class index or name such as "sneaker"."""
        request = _image_request(sampler_pb2.GenerateRequest(count=count), image_format, seed, version, label)
        response = self._call(self._stub.Generate, request, timeout)
        return GenerateResult(_decode(response, as_numpy), response.model_version, response.seed,
                              list(response.images), list(response.class_indices))

    def generate_stream(self, count: int, seed: int | None = None, version: int | None = None,
                        image_format: str = "png", as_numpy: bool = False, timeout: float | None = None,
                        label: int | str | None = None) -> Iterator[GenerateResult]:
        """Yields the images of one large request in pieces as the server makes them (`first_index` says
        where each piece starts); same images as generate() with the same seed, version and count.
        `timeout` (default none) bounds the whole stream."""
        request = _image_request(sampler_pb2.GenerateStreamRequest(count=count), image_format, seed, version, label)
        stream = self._stub.GenerateStream(request, timeout=timeout)
        try:
            for piece in stream:
                yield GenerateResult(_decode(piece, as_numpy), piece.model_version, piece.seed, list(piece.images),
                                     list(piece.class_indices), piece.first_index)
        except grpc.RpcError as error:
            raise GanServiceError.from_rpc_error(error, self.target) from None
        finally:
            stream.cancel()

    def interpolate(self, seed_from: int, seed_to: int, steps: int, version: int | None = None,
                    spherical: bool = True, image_format: str = "png", as_numpy: bool = False,
                    timeout: float | None = None, label: int | str | None = None) -> GenerateResult:
        """`steps` images walking from seed_from's first latent to seed_to's (slerp, or linear)."""
        method = (sampler_pb2.INTERPOLATION_METHOD_SPHERICAL if spherical
                  else sampler_pb2.INTERPOLATION_METHOD_LINEAR)
        request = _image_request(sampler_pb2.InterpolateRequest(seed_from=seed_from, seed_to=seed_to, steps=steps,
                                                                method=method),
                                 image_format, None, version, label)
        response = self._call(self._stub.Interpolate, request, timeout)
        return GenerateResult(_decode(response, as_numpy), response.model_version, seed_from,
                              list(response.images), list(response.class_indices))

    def versions(self, timeout: float | None = None) -> list[VersionInfo]:
        """Every published version, oldest first, with its state in this sampler and its scores."""
        response = self._call(self._stub.ListVersions, sampler_pb2.ListVersionsRequest(), timeout)
        return [VersionInfo(
            model_version=v.model_version, training_step=v.training_step,
            published_at=v.published_at.ToJsonString() if v.HasField("published_at") else "",
            state=sampler_pb2.VersionState.Name(v.state).removeprefix("VERSION_STATE_"), serving=v.serving,
            in_flight_requests=v.in_flight_requests, scores=dict(v.scores), architecture=v.architecture,
            dataset=v.dataset, conditional=v.conditional, error=v.error) for v in response.versions]

    def info(self, version: int | None = None, timeout: float | None = None) -> ModelInfo:
        request = sampler_pb2.GetModelInfoRequest()
        if version is not None:
            request.model_version = version
        info = self._call(self._stub.GetModelInfo, request, timeout).info
        return ModelInfo(
            model_version=info.model_version, training_step=info.training_step,
            image_shape=(info.height, info.width, info.channels), latent_dim=info.latent_dim,
            dataset=info.dataset, architecture=info.architecture,
            published_at=info.published_at.ToJsonString() if info.HasField("published_at") else "",
            available_versions=list(info.available_versions),
            metadata=json.loads(info.metadata_json) if info.metadata_json else {},
            class_names=list(info.class_names), conditional=info.conditional, scores=dict(info.scores),
            compute_precision=info.compute_precision)


ImageRequest = TypeVar("ImageRequest", sampler_pb2.GenerateRequest, sampler_pb2.GenerateStreamRequest,
                       sampler_pb2.InterpolateRequest)


def _image_request(request: ImageRequest, image_format: str, seed: int | None, version: int | None,
                   label: int | str | None) -> ImageRequest:
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(FORMATS)}, not {image_format!r}")
    request.format = FORMATS[image_format]
    if seed is not None:
        request.seed = seed
    if version is not None:
        request.model_version = version
    if isinstance(label, int):
        request.class_index = label
    elif label is not None:
        request.class_name = label
    return request


def _decode(response: sampler_pb2.GenerateResponse | sampler_pb2.GenerateStreamResponse
            | sampler_pb2.InterpolateResponse, as_numpy: bool) -> list:
    shape = (response.height, response.width, response.channels)
    if response.format == sampler_pb2.IMAGE_FORMAT_RAW_UINT8:
        arrays = [np.frombuffer(data, dtype=np.uint8).reshape(shape) for data in response.images]
    else:
        arrays = [image_utils.decode_png(data) for data in response.images]
    return arrays if as_numpy else [image_utils.to_pil(array) for array in arrays]


def _status_from_proto(progress: trainer_pb2.TrainingProgress, **extra: str) -> TrainerStatus:
    return TrainerStatus(
        state=trainer_pb2.TrainerState.Name(progress.state).removeprefix("TRAINER_STATE_"),
        step=progress.step, total_steps=progress.total_steps, generator_loss=progress.generator_loss,
        discriminator_loss=progress.discriminator_loss, images_per_second=progress.images_per_second,
        eta_seconds=progress.eta_seconds, last_checkpoint_step=progress.last_checkpoint_step,
        last_published_version=progress.last_published_version, message=progress.message,
        publish_every=progress.publish_every, resident_memory_bytes=progress.resident_memory_bytes, **extra)


@dataclasses.dataclass(frozen=True)
class Checkpointed:
    step: int
    model_version: int  # 0 when not known (Stop without wait)


class TrainerClient(_Stub):
    """Progress and control of a running trainer; raises GanServiceError."""

    def __init__(self, target: str = "localhost:50052", timeout: float = 10.0,
                 credentials: Credentials | None = None, retries: int = 0) -> None:
        super().__init__(target, timeout, credentials, retries)
        self._stub = trainer_pb2_grpc.TrainerStub(self._channel)

    def status(self, timeout: float | None = None) -> TrainerStatus:
        response = self._call(self._stub.GetStatus, trainer_pb2.GetStatusRequest(), timeout)
        return _status_from_proto(response.progress, dataset=response.dataset, architecture=response.architecture,
                                  strategy=response.strategy, num_replicas=response.num_replicas)

    def checkpoint_now(self, timeout: float | None = None) -> Checkpointed:
        """Checkpoints and publishes the current step; returns once both are on disk."""
        response = self._call(self._stub.CheckpointNow, trainer_pb2.CheckpointNowRequest(), timeout)
        return Checkpointed(response.step, response.model_version)

    def stop(self, wait: bool = False, timeout: float | None = None) -> Checkpointed:
        """Graceful stop (checkpoint, publish, exit 0). wait=True returns the final step and version."""
        response = self._call(self._stub.Stop, trainer_pb2.StopRequest(wait=wait), timeout)
        return Checkpointed(response.step, response.model_version)

    def set_publish_interval(self, steps: int, timeout: float | None = None) -> int:
        """Changes how often the running trainer publishes; returns the previous interval."""
        request = trainer_pb2.SetPublishIntervalRequest(publish_every=steps)
        return self._call(self._stub.SetPublishInterval, request, timeout).previous_publish_every

    def watch(self, timeout: float | None = None) -> Iterator[TrainerStatus]:
        """Yields progress updates until training ends (or `timeout` seconds pass)."""
        stream = self._stub.WatchProgress(trainer_pb2.WatchProgressRequest(), timeout=timeout)
        try:
            for progress in stream:
                yield _status_from_proto(progress)
        except grpc.RpcError as error:
            raise GanServiceError.from_rpc_error(error, self.target) from None
        finally:
            stream.cancel()
