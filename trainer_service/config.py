"""The trainer's configuration: one frozen dataclass; flags and GAN_TRAINER_* variables come from it."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from gan_common.config_cli import ConfigError, option, parse_config
from trainer_service.models import ARCHITECTURES

ENV_PREFIX = "GAN_TRAINER_"


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    store: str = option("store", "folder for checkpoints, published models and TensorBoard logs")
    dataset: str = option("fashion_mnist", "fashion_mnist (Debian's local files first), mnist, or the path "
                                           "of an IDX folder, an .npz file or an image folder")
    dataset_limit: int | None = option(None, "train on the first N images only (quick runs)")
    allow_download: bool = option(True, "download mnist/fashion_mnist with Keras when not found locally")
    architecture: str = option("dcgan", "dcgan (seeds 003/004) or dense (seeds 000/002)",
                               choices=tuple(ARCHITECTURES))
    image_size: int = option(28, "height and width of the images; other sizes are resized to it")
    latent_dim: int | None = option(None, "length of the latent vector (default: the seed's, 100)")
    batch_size: int | None = option(None, "images per step (default: the seed's, dcgan 256, dense 64)")
    generator_lr: float | None = option(None, "generator Adam learning rate (dcgan 1e-4, dense 2e-4)")
    discriminator_lr: float | None = option(None, "discriminator Adam learning rate (dcgan 1e-4, dense 2e-4)")
    beta_1: float | None = option(None, "Adam beta_1 (dcgan 0.9, dense 0.5)")
    beta_2: float | None = option(None, "Adam beta_2 (0.999)")
    steps: int | None = option(None, "training steps in all (default: the seed's length, dcgan 50 epochs, "
                                     "dense 10000 iterations)")
    checkpoint_every: int = option(200, "save a checkpoint every N steps")
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep")
    publish_every: int = option(1000, "publish a generator version for serving every N steps")
    log_every: int = option(20, "print a progress line every N steps")
    grid_size: int = option(4, "sample grid of N x N images written with each published version")
    seed: int | None = option(None, "random seed for weights, noise and data order (default: drawn and "
                                    "recorded in the checkpoint)")
    host: str = option("127.0.0.1", "address the Trainer gRPC service listens on (0.0.0.0 for all)")
    port: int = option(50052, "port of the Trainer gRPC service (0: any free port)")
    log_level: str = option("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def validate(self) -> "TrainerConfig":
        positive = ["image_size", "checkpoint_every", "keep_checkpoints", "publish_every", "log_every",
                    "grid_size", "latent_dim", "batch_size", "steps", "dataset_limit"]
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {value}")
        for name in ("generator_lr", "discriminator_lr"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in (0, 1), not {value}")
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), not {value}")
        if self.architecture == "dcgan" and self.image_size % 4:
            raise ConfigError(f"--image-size must be divisible by 4 for dcgan, not {self.image_size}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, not {self.port}")
        return self

    def with_seed_defaults(self, dataset_size: int) -> "TrainerConfig":
        """Fills every unset hyperparameter with the seed tutorial's value for the architecture."""
        seed = ARCHITECTURES[self.architecture]
        batch_size = self.batch_size or seed.batch_size
        if batch_size > dataset_size:
            raise ConfigError(f"--batch-size {batch_size} is larger than the dataset ({dataset_size} images)")
        steps = self.steps
        if steps is None:
            steps = seed.iterations or seed.epochs * (dataset_size // batch_size)  # type: ignore[operator]
        return dataclasses.replace(
            self, latent_dim=self.latent_dim or seed.latent_dim, batch_size=batch_size,
            generator_lr=self.generator_lr or seed.generator_lr,
            discriminator_lr=self.discriminator_lr or seed.discriminator_lr,
            beta_1=seed.beta_1 if self.beta_1 is None else self.beta_1,
            beta_2=seed.beta_2 if self.beta_2 is None else self.beta_2, steps=steps)


def load_config(argv: Sequence[str] | None = None) -> TrainerConfig:
    config = parse_config(TrainerConfig, argv, ENV_PREFIX,
                          "Trains a GAN, checkpoints it and publishes generator versions for serving.",
                          prog="python -m trainer_service")
    return config.validate()
