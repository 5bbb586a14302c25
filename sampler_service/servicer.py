"""The Sampler gRPC servicer: validates, resolves the model, delegates to pure helpers."""

from __future__ import annotations

import logging

import grpc

from gan_common import images as image_utils
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from sampler_service import sampling
from sampler_service.loading import LoadedModel
from sampler_service.registry import ModelRegistry, NoModelYet, VersionNotFound, VersionUnloadable

logger = logging.getLogger(__name__)


class SamplerServicer(sampler_pb2_grpc.SamplerServicer):
    def __init__(self, registry: ModelRegistry, max_count: int) -> None:
        self._registry = registry
        self._max_count = max_count

    def _resolve(self, version: int | None) -> LoadedModel:
        try:
            return self._registry.resolve(version)
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

    def Generate(self, request: sampler_pb2.GenerateRequest, context: grpc.ServicerContext
                 ) -> sampler_pb2.GenerateResponse:
        try:
            params = sampling.validate_generate(request, self._max_count)
            model = self._resolve(params.version)
            labels = sampling.resolve_labels(request, params, model.version, model.metadata.num_classes,
                                             model.metadata.class_names)
        except sampling.RequestError as error:
            context.abort(error.code, error.message)
        latents = image_utils.latents_for_seed(params.seed, params.count, model.latent_dim)
        pixels = model.generate(latents, labels)
        height, width, channels = model.image_shape
        logger.debug("generated %d images with version %d, seed %d", params.count, model.version, params.seed)
        return sampler_pb2.GenerateResponse(
            images=sampling.encode_images(pixels, params.image_format), model_version=model.version,
            seed=params.seed, format=params.image_format, height=height, width=width, channels=channels,
            class_indices=[] if labels is None else labels.tolist())

    def GetModelInfo(self, request: sampler_pb2.GetModelInfoRequest, context: grpc.ServicerContext
                     ) -> sampler_pb2.GetModelInfoResponse:
        try:
            version = sampling.validate_version(request.HasField("model_version"), request.model_version)
            model = self._resolve(version)
        except sampling.RequestError as error:
            context.abort(error.code, error.message)
        meta = model.metadata
        height, width, channels = model.image_shape
        info = sampler_pb2.ModelInfo(
            model_version=model.version, training_step=meta.training_step, height=height, width=width,
            channels=channels, latent_dim=meta.latent_dim, dataset=meta.dataset,
            architecture=meta.architecture, available_versions=self._registry.available_versions(),
            metadata_json=meta.to_json(), class_names=list(meta.class_names), conditional=meta.num_classes > 0)
        if meta.published_at:
            info.published_at.FromJsonString(meta.published_at.replace("+00:00", "Z"))
        return sampler_pb2.GetModelInfoResponse(info=info)
