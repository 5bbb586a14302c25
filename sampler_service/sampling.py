"""Pure request handling: validation, latent sampling and image encoding. No gRPC server, no files."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Sequence

import grpc
import numpy as np

from gan_common import images as image_utils
from protos.gan.v1 import sampler_pb2

FORMAT_NAMES = {sampler_pb2.IMAGE_FORMAT_PNG: "PNG", sampler_pb2.IMAGE_FORMAT_RAW_UINT8: "RAW_UINT8"}
MAX_SEED = 2**64 - 1


class RequestError(Exception):
    """A request the server refuses: carries the status code and a sentence for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class GenerateParams:
    count: int
    seed: int
    version: int | None  # None: the version served now
    image_format: int


def draw_seed() -> int:
    return secrets.randbits(63)  # fits a signed 64-bit integer in every client language


def validate_version(has_version: bool, version: int) -> int | None:
    if not has_version or version == 0:
        return None
    if version < 0:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"model_version must be a published version number (positive), not {version}")
    return version


def validate_generate(request: sampler_pb2.GenerateRequest, max_count: int) -> GenerateParams:
    if request.count <= 0:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"count must be at least 1, not {request.count}")
    if request.count > max_count:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"count {request.count} is above this server's maximum of {max_count}; "
                           "split the request")
    image_format = request.format or sampler_pb2.IMAGE_FORMAT_PNG
    if image_format not in FORMAT_NAMES:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unknown image format {request.format}; use IMAGE_FORMAT_PNG or IMAGE_FORMAT_RAW_UINT8")
    seed = request.seed if request.HasField("seed") else draw_seed()
    version = validate_version(request.HasField("model_version"), request.model_version)
    return GenerateParams(request.count, seed, version, image_format)


def resolve_labels(request: sampler_pb2.GenerateRequest, params: GenerateParams, model_version: int,
                   num_classes: int, class_names: Sequence[str]) -> np.ndarray | None:
    """The class of each image: the requested one, one drawn from the seed, or None (unconditional)."""
    which = request.WhichOneof("label")
    if which is None:
        return image_utils.labels_for_seed(params.seed, params.count, num_classes) if num_classes else None
    if not num_classes:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"model version {model_version} is not class-conditional; omit the class label")
    known = ", ".join(f"{i} ({name})" for i, name in enumerate(class_names)) or f"0..{num_classes - 1}"
    if which == "class_index":
        index = request.class_index
        if not 0 <= index < num_classes:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"class index {index} is out of range; model version {model_version} knows {known}")
    else:
        wanted = request.class_name.strip().lower()
        matches = [i for i, name in enumerate(class_names) if name.lower() == wanted]
        if not matches:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"unknown class {request.class_name!r}; model version {model_version} knows {known}")
        index = matches[0]
    return np.full(params.count, index, dtype=np.int32)


def encode_images(pixels: np.ndarray, image_format: int) -> list[bytes]:
    if image_format == sampler_pb2.IMAGE_FORMAT_RAW_UINT8:
        return [np.ascontiguousarray(image).tobytes() for image in pixels]
    return [image_utils.encode_png(image) for image in pixels]
