"""Fixtures shared by every room's tests: real data, tiny published models, servers on free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail("real Fashion-MNIST is missing: `make test` installs Debian's dataset-fashion-mnist "
                    "(or run scripts/install_dataset.sh)")
    return FASHION_MNIST_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def publish_tiny_generator(store: Path, version: int, architecture: str = "dcgan", seed: int = 0) -> Path:
    """Publishes an untrained generator as the trainer would (real SavedModel, real metadata)."""
    import keras

    from gan_common.store import ModelMetadata
    from trainer_service.models import ARCHITECTURES
    from trainer_service.publish import publish_version, utc_now_iso

    keras.utils.set_random_seed(seed)
    generator = ARCHITECTURES[architecture].build_generator(100, (28, 28, 1))
    metadata = ModelMetadata(latent_dim=100, artifact_path="saved_model", artifact_format="saved_model",
                             model_version=version, training_step=version, image_shape=(28, 28, 1),
                             dataset="test", architecture=architecture, published_at=utc_now_iso())
    return publish_version(store, version, generator, metadata, grid_size=2)
