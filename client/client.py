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
    dataset: str = ""
    architecture: str = ""


class _Stub:
    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)

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

    def __init__(self, target: str = "localhost:50051", timeout: float = 30.0) -> None:
        super().__init__(target, timeout)
        self._stub = sampler_pb2_grpc.SamplerStub(self._channel)

    def generate(self, count: int, seed: int | None = None, version: int | None = None,
                 image_format: str = "png", as_numpy: bool = False, timeout: float | None = None,
                 label: int | str | None = None) -> GenerateResult:
        """`label` (conditional models): a class index or name such as "sneaker"."""
        if image_format not in FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(FORMATS)}, not {image_format!r}")
        request = sampler_pb2.GenerateRequest(count=count, format=FORMATS[image_format])
        if seed is not None:
            request.seed = seed
        if version is not None:
            request.model_version = version
        if isinstance(label, int):
            request.class_index = label
        elif label is not None:
            request.class_name = label
        response = self._call(self._stub.Generate, request, timeout)
        shape = (response.height, response.width, response.channels)
        if response.format == sampler_pb2.IMAGE_FORMAT_RAW_UINT8:
            arrays = [np.frombuffer(data, dtype=np.uint8).reshape(shape) for data in response.images]
        else:
            arrays = [image_utils.decode_png(data) for data in response.images]
        images = arrays if as_numpy else [image_utils.to_pil(array) for array in arrays]
        return GenerateResult(images, response.model_version, response.seed, list(response.images),
                              list(response.class_indices))

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
            class_names=list(info.class_names), conditional=info.conditional)


def _status_from_proto(progress: trainer_pb2.TrainingProgress, **extra: str) -> TrainerStatus:
    return TrainerStatus(
        state=trainer_pb2.TrainerState.Name(progress.state).removeprefix("TRAINER_STATE_"),
        step=progress.step, total_steps=progress.total_steps, generator_loss=progress.generator_loss,
        discriminator_loss=progress.discriminator_loss, images_per_second=progress.images_per_second,
        eta_seconds=progress.eta_seconds, last_checkpoint_step=progress.last_checkpoint_step,
        last_published_version=progress.last_published_version, message=progress.message, **extra)


class TrainerClient(_Stub):
    def __init__(self, target: str = "localhost:50052", timeout: float = 10.0) -> None:
        super().__init__(target, timeout)
        self._stub = trainer_pb2_grpc.TrainerStub(self._channel)

    def status(self, timeout: float | None = None) -> TrainerStatus:
        response = self._call(self._stub.GetStatus, trainer_pb2.GetStatusRequest(), timeout)
        return _status_from_proto(response.progress, dataset=response.dataset, architecture=response.architecture)

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
