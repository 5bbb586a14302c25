"""Pure request handling: validation, latent sampling, interpolation and image encoding. No gRPC server,
no files."""

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


@dataclasses.dataclass(frozen=True)
class InterpolateParams:
    seed_from: int
    seed_to: int
    steps: int
    version: int | None
    image_format: int
    spherical: bool


def _validate_format(value: int) -> int:
    image_format = value or sampler_pb2.IMAGE_FORMAT_PNG
    if image_format not in FORMAT_NAMES:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unknown image format {value}; use IMAGE_FORMAT_PNG or IMAGE_FORMAT_RAW_UINT8")
    return image_format


def validate_generate(request: sampler_pb2.GenerateRequest | sampler_pb2.GenerateStreamRequest,
                      max_count: int) -> GenerateParams:
    """Generate and GenerateStream requests have the same fields; only their limits differ."""
    if request.count <= 0:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"count must be at least 1, not {request.count}")
    if request.count > max_count:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"count {request.count} is above this server's maximum of {max_count}; "
                           + ("split the request" if isinstance(request, sampler_pb2.GenerateStreamRequest)
                              else "split the request or use GenerateStream"))
    image_format = _validate_format(request.format)
    seed = request.seed if request.HasField("seed") else draw_seed()
    version = validate_version(request.HasField("model_version"), request.model_version)
    return GenerateParams(request.count, seed, version, image_format)


def validate_interpolate(request: sampler_pb2.InterpolateRequest, max_count: int) -> InterpolateParams:
    if not 2 <= request.steps <= max_count:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"steps must be 2..{max_count} (both ends included), not {request.steps}")
    method = request.method or sampler_pb2.INTERPOLATION_METHOD_SPHERICAL
    if method not in (sampler_pb2.INTERPOLATION_METHOD_SPHERICAL, sampler_pb2.INTERPOLATION_METHOD_LINEAR):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"unknown interpolation method {request.method}; use "
                           "INTERPOLATION_METHOD_SPHERICAL or INTERPOLATION_METHOD_LINEAR")
    return InterpolateParams(request.seed_from, request.seed_to, request.steps,
                             validate_version(request.HasField("model_version"), request.model_version),
                             _validate_format(request.format), method == sampler_pb2.INTERPOLATION_METHOD_SPHERICAL)


def interpolate_latents(start: np.ndarray, end: np.ndarray, steps: int, spherical: bool) -> np.ndarray:
    """`steps` latents from `start` to `end`, both included exactly. Spherical (slerp) follows the great
    circle, so the points keep the norm Gaussian latents have instead of shrinking towards the middle."""
    a, b = start.astype(np.float64), end.astype(np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    cos_angle = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    angle = np.arccos(np.clip(cos_angle, -1.0, 1.0))
    if not spherical or np.sin(angle) < 1e-6:  # (anti)parallel: the great circle is undefined
        path = (1.0 - t) * a + t * b
    else:
        path = (np.sin((1.0 - t) * angle) * a + np.sin(t * angle) * b) / np.sin(angle)
    path[0], path[-1] = a, b  # exact ends: the first and last images equal Generate's for those seeds
    return path.astype(np.float32)


def check_response_size(count: int, image_shape: Sequence[int], max_bytes: int, streaming_hint: bool) -> None:
    """Refuses, before any work, a response that could exceed the message limit (PNG can be larger than
    the raw pixels: a filter byte a row; zlib-ng's level 1 codes a byte in up to 9 bits, so noise-like
    pixels grow by up to an eighth (5.5 % measured); block and chunk headers)."""
    height, width, channels = image_shape
    rows = height * (width * channels + 1)
    per_image = rows + rows // 8 + 5 * (rows // 16383 + 1) + 128
    if count * per_image + 1024 > max_bytes:
        fits = max(1, (max_bytes - 1024) // per_image)
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{count} images of {height}x{width}x{channels} may exceed this server's message "
                           f"limit of {max_bytes} bytes; ask for at most {fits} per request"
                           + (" or use GenerateStream" if streaming_hint else ""))


def resolve_labels(request: sampler_pb2.GenerateRequest | sampler_pb2.GenerateStreamRequest
                   | sampler_pb2.InterpolateRequest, seed: int, count: int, model_version: int,
                   num_classes: int, class_names: Sequence[str]) -> np.ndarray | None:
    """The class of each image: the requested one, one drawn from the seed, or None (unconditional)."""
    which = request.WhichOneof("label")
    if which is None:
        return image_utils.labels_for_seed(seed, count, num_classes) if num_classes else None
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
                               f"unknown class {request.class_name[:64]!r}{'...' if len(request.class_name) > 64 else ''}; "
                               f"model version {model_version} knows {known}")
        index = matches[0]
    return np.full(count, index, dtype=np.int32)


def encode_images(pixels: np.ndarray, image_format: int) -> list[bytes]:
    if image_format == sampler_pb2.IMAGE_FORMAT_RAW_UINT8:
        return [np.ascontiguousarray(image).tobytes() for image in pixels]
    return image_utils.encode_pngs(pixels)
