"""Pure image helpers shared by trainer, sampler and client (numpy and Pillow only, no TensorFlow)."""

from __future__ import annotations

import io
import math
import struct
import zlib
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
from zlib_ng import zlib_ng


def latents_for_seed(seed: int, count: int, latent_dim: int) -> np.ndarray:
    """The latent vectors for a seed: row i depends only on (seed, i), so a prefix of a larger request
    gets the same vectors."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return rng.standard_normal((count, latent_dim), dtype=np.float32)


def latent_batches(seed: int, count: int, latent_dim: int, batch_size: int) -> Iterator[np.ndarray]:
    """latents_for_seed(seed, count, latent_dim) in consecutive batches, never all in memory at once (the
    generator draws its normals one after another, so batches concatenate to the same array)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    for start in range(0, count, batch_size):
        yield rng.standard_normal((min(batch_size, count - start), latent_dim), dtype=np.float32)


def labels_for_seed(seed: int, count: int, num_classes: int) -> np.ndarray:
    """Classes for a conditional request that names none: drawn from the seed, apart from the latents."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1])))
    return rng.integers(0, num_classes, count, dtype=np.int32)


def to_uint8(images: np.ndarray, output_range: Sequence[float] = (-1.0, 1.0)) -> np.ndarray:
    """Maps generator output in `output_range` (tanh: -1..1, sigmoid: 0..1) to uint8 pixels."""
    low, high = float(output_range[0]), float(output_range[1])
    scaled = (np.asarray(images, dtype=np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_pil(image: np.ndarray) -> Image.Image:
    """An HxWxC uint8 array (C = 1 or 3) as a Pillow image."""
    if image.ndim == 3 and image.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(image[:, :, 0]))
    return Image.fromarray(np.ascontiguousarray(image))


def encode_png(image: np.ndarray) -> bytes:
    """An HxWxC (or HxW) uint8 array, C = 1 or 3, as a PNG file."""
    return encode_pngs((image[:, :, None] if image.ndim == 2 else image)[None])[0]


def encode_pngs(images: np.ndarray) -> list[bytes]:
    """NxHxWxC uint8 images (C = 1 or 3) as PNG files, written directly: 2.5x faster than Pillow for the
    sampler's small images, where encoding is a visible share of serving time. Deflated by zlib-ng at
    level 1: 14 µs for a 28x28 image against zlib's 46 µs at level 6, for files 8 % larger (measured on
    the demo model's images); a lone 16-image request came back 1.0 to 1.4 ms sooner. The rows of all
    images are laid out at once, so the per-image Python work is only the deflate and a checksum."""
    count, height, width, channels = images.shape
    rows = np.zeros((count, height, 1 + width * channels), np.uint8)  # each row: filter type 0, then pixels
    rows[:, :, 1:] = images.reshape(count, height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)  # 8-bit grey/RGB
    start = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    end = _png_chunk(b"IEND", b"")
    idat_crc = zlib.crc32(b"IDAT")
    files = []
    for image_rows in rows:
        data = zlib_ng.compress(image_rows.tobytes(), 1)
        files.append(start + struct.pack(">I", len(data)) + b"IDAT" + data
                     + struct.pack(">I", zlib.crc32(data, idat_crc)) + end)
    return files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes to an HxWxC uint8 array."""
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image)
    return array[:, :, None] if array.ndim == 2 else array


def tile_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Lays NxHxWxC uint8 images out in a grid (as the seeds' save_imgs does with subplots)."""
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
                    dtype=np.uint8)
    for index in range(count):
        row, col = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        grid[top:top + height, left:left + width] = images[index]
    return grid
