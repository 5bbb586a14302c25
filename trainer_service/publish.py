"""Publishes generator versions into the store: written aside, flushed, then renamed into place."""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import uuid
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_common import images as image_utils
from gan_common import store as store_layout

logger = logging.getLogger(__name__)

GRID_SEED = 0  # every version's sample grid uses the same latents, so grids compare across versions


class PublishError(OSError):
    """The store refused a version (disk full, read-only, no permission); nothing was published."""


def _reason(error: Exception) -> str:
    """The operating system's words ('No space left on device'), without TensorFlow's op decoration."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(getattr(error, "message", error)).rsplit("; ", 1)[-1].split(" [Op:")[0].strip()


def sample_grid(generator: keras.Model, latent_dim: int, grid_size: int,
                output_range: tuple[float, float] = (-1.0, 1.0), num_classes: int = 0) -> np.ndarray:
    """The seeds' save_imgs: a grid_size x grid_size tiling of images from fixed latents (for a
    conditional generator, classes in turn)."""
    latents = image_utils.latents_for_seed(GRID_SEED, grid_size * grid_size, latent_dim)
    inputs = [latents, np.arange(len(latents), dtype=np.int32) % num_classes] if num_classes else latents
    generated = np.asarray(generator(inputs, training=False))
    return image_utils.tile_grid(image_utils.to_uint8(generated, output_range), columns=grid_size)


def remove_stale_temporaries(store: Path) -> None:
    """Deletes half-written versions left by a publisher that died mid-write."""
    root = store_layout.models_dir(store)
    if root.is_dir():
        for entry in root.glob(store_layout.TEMP_PREFIX + "*"):
            logger.warning("removing unfinished publish %s", entry)
            shutil.rmtree(entry, ignore_errors=True)


def publish_version(store: Path, version: int, generator: keras.Model, metadata: store_layout.ModelMetadata,
                    grid_size: int) -> Path:
    """Writes `generator` as store/models/<version>/ and returns that folder.

    A version is immutable: if the folder exists already (a resumed run reaching the same step), it is
    kept as it is.
    """
    final_dir = store_layout.version_dir(store, version)
    if final_dir.exists():
        logger.info("version %d is already published; keeping it", version)
        return final_dir
    root = store_layout.models_dir(store)
    temp_dir = root / f"{store_layout.TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp_dir.mkdir()
        generator.export(str(temp_dir / metadata.artifact_path), format="tf_saved_model", verbose=False)
        grid = sample_grid(generator, metadata.latent_dim, grid_size, metadata.output_range, metadata.num_classes)
        (temp_dir / store_layout.SAMPLE_GRID_FILE).write_bytes(image_utils.encode_png(grid))
        (temp_dir / store_layout.METADATA_FILE).write_text(metadata.to_json())
        store_layout.fsync_tree(temp_dir)
        os.rename(temp_dir, final_dir)  # atomic on one file system: readers see all or nothing
        store_layout.fsync_dir(root)
    except (OSError, tf.errors.OpError) as error:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise PublishError(f"cannot publish version {version} to {root}: {_reason(error)}") from error
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    logger.info("published version %d to %s", version, final_dir)
    return final_dir


def publish_copy(source: Path, store: Path, version: int) -> Path:
    """Publishes the files of a published version folder (of this store or another) again as
    store/models/<version>/, aside then renamed as publish_version does: the load and fault tests'
    stand-in for a trainer."""
    root = store_layout.models_dir(store)
    temp_dir = root / f"{store_layout.TEMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(source, temp_dir)
        store_layout.fsync_tree(temp_dir)
        os.rename(temp_dir, store_layout.version_dir(store, version))
        store_layout.fsync_dir(root)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return store_layout.version_dir(store, version)


def publish_untrained_generator(store: Path, version: int, architecture: str = "dcgan", seed: int = 0,
                                class_names: tuple[str, ...] = ()) -> Path:
    """Publishes a freshly initialised 28x28x1 generator exactly as the trainer publishes (real SavedModel,
    real metadata), class-conditional when class_names are given: for tests and benchmarks, where the cost
    and the plumbing matter and the weights do not."""
    from trainer_service.models import ARCHITECTURES, build_pair

    keras.utils.set_random_seed(seed)
    generator, _ = build_pair(ARCHITECTURES[architecture], 100, (28, 28, 1), len(class_names))
    metadata = store_layout.ModelMetadata(
        latent_dim=100, artifact_path="saved_model", artifact_format="saved_model", model_version=version,
        training_step=version, image_shape=(28, 28, 1), dataset="untrained", architecture=architecture,
        published_at=utc_now_iso(), num_classes=len(class_names), class_names=class_names)
    return publish_version(store, version, generator, metadata, grid_size=2)


def utc_now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
