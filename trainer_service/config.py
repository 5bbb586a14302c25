"""The trainer's configuration: one frozen dataclass; flags and GAN_TRAINER_* variables come from it."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from gan_common.config_cli import ConfigError, option, parse_config
from gan_common.security import ServerSecurity
from trainer_service.distribution import STRATEGIES
from trainer_service.models import ARCHITECTURES
from trainer_service.recipes import RECIPES

ENV_PREFIX = "GAN_TRAINER_"


@dataclasses.dataclass(frozen=True)
class TrainerConfig(ServerSecurity):
    """Everything a training run is configured by. TLS and caller authentication come from ServerSecurity:
    the control RPCs need the token or an allowed client certificate (callers on this host only when
    neither is configured)."""

    store: str = option("store", "folder for checkpoints, published models and TensorBoard logs")
    dataset: str = option("fashion_mnist", "fashion_mnist (Debian's local files first), mnist, or the path "
                                           "of an IDX folder, an .npz file or an image folder")
    dataset_limit: int | None = option(None, "train on the first N images only (quick runs)")
    allow_download: bool = option(True, "download mnist/fashion_mnist with Keras when not found locally")
    recipe: str = option("default", "default (ours, measured best), seed-dcgan (seeds 003/004 exactly) or "
                                    "seed-dense (seeds 000/002 exactly); the flags below override its values",
                         choices=tuple(RECIPES))
    architecture: str | None = option(None, "dcgan, dcgan-k4, resize-dcgan or dense (default: the recipe's)",
                                      choices=tuple(ARCHITECTURES))
    conditional: bool = option(False, "train a class-conditional model on the dataset's labels, so Generate "
                                      "can ask for a class (dcgan architectures)")
    image_size: int = option(28, "height and width of the images; other sizes are resized to it")
    latent_dim: int | None = option(None, "length of the latent vector (recipes: 100)")
    batch_size: int | None = option(None, "images per step (default 64, seed-dcgan 256, seed-dense 64)")
    generator_lr: float | None = option(None, "generator Adam learning rate (default 2e-4, seed-dcgan 1e-4)")
    discriminator_lr: float | None = option(None, "discriminator Adam learning rate (default 2e-4, "
                                                  "seed-dcgan 1e-4)")
    beta_1: float | None = option(None, "Adam beta_1 (default 0.5, seed-dcgan 0.9, seed-dense 0.5)")
    beta_2: float | None = option(None, "Adam beta_2 (0.999)")
    label_smoothing: float | None = option(None, "one-sided label smoothing: real target 1 - this "
                                                 "(default 0.1, seeds 0)")
    ema_decay: float | None = option(None, "decay of the generator weights' moving average that is "
                                           "published; 0 publishes the raw generator (default 0.99, seeds 0)")
    steps: int | None = option(None, "training steps in all (default: the recipe's length: default 20 "
                                     "epochs, seed-dcgan 50 epochs, seed-dense 10000 iterations)")
    time_budget_seconds: float | None = option(None, "stop (checkpoint and publish) after this much "
                                                     "training time in this run")
    checkpoint_every: int = option(200, "save a checkpoint every N steps")
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep")
    publish_every: int = option(1000, "publish a generator version for serving every N steps")
    log_every: int = option(20, "print a progress line every N steps")
    evaluate: bool = option(True, "score each published version with the offline judge (trained once per "
                                  "dataset and cached in the store) and write scores.json beside it")
    eval_samples: int = option(2000, "generated images scored per published version")
    grid_size: int = option(4, "sample grid of N x N images written with each published version")
    seed: int | None = option(None, "random seed for weights, noise and data order (default: drawn and "
                                    "recorded in the checkpoint)")
    strategy: str = option("default", "tf.distribute strategy: default (one device), mirrored (every local GPU, "
                                      "or the --cpu-logical-devices), multi-worker (the machines TF_CONFIG lists); "
                                      "--batch-size is the global batch, split across replicas",
                           choices=STRATEGIES)
    cpu_logical_devices: int = option(0, "split the CPU into N logical devices, e.g. to run --strategy mirrored "
                                         "without GPUs; 0: no split")
    jit_compile: bool | None = option(None, "compile each replica's train step with XLA (default: the recipe's: "
                                            "on for default, except on CPUs with AVX-512, where it is slower; "
                                            "off for the seeds')")
    mixed_precision: bool = option(False, "float16 compute with float32 weights and loss scaling; for GPUs "
                                          "(much slower on CPUs); published generators stay float32")
    host: str = option("127.0.0.1", "address the Trainer gRPC service listens on (0.0.0.0 for all)")
    port: int = option(50052, "port of the Trainer gRPC service (0: any free port)")
    log_level: str = option("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def validate(self) -> "TrainerConfig":
        positive = ["image_size", "checkpoint_every", "keep_checkpoints", "publish_every", "log_every",
                    "grid_size", "eval_samples", "latent_dim", "batch_size", "steps", "dataset_limit"]
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {value}")
        for name in ("generator_lr", "discriminator_lr"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in (0, 1), not {value}")
        for name in ("beta_1", "beta_2", "label_smoothing", "ema_decay"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), not {value}")
        if not 10 <= self.eval_samples <= 50000:  # k-NN precision/recall and KID need a few samples
            raise ConfigError(f"--eval-samples must be between 10 and 50000, not {self.eval_samples}")
        if self.time_budget_seconds is not None and self.time_budget_seconds <= 0:
            raise ConfigError(f"--time-budget-seconds must be positive, not {self.time_budget_seconds}")
        if (self.architecture or RECIPES[self.recipe].architecture) != "dense" and self.image_size % 4:
            raise ConfigError(f"--image-size must be divisible by 4 for dcgan, not {self.image_size}")
        if self.cpu_logical_devices < 0:
            raise ConfigError(f"--cpu-logical-devices must be 0 or more, not {self.cpu_logical_devices}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535, not {self.port}")
        self.validate_security(self.host)
        return self

    def resolved(self, dataset_size: int) -> "TrainerConfig":
        """Fills every unset hyperparameter with the recipe's value."""
        recipe = RECIPES[self.recipe]

        def pick(name: str):  # noqa: ANN202
            value = getattr(self, name)
            return getattr(recipe, name) if value is None else value

        batch_size = pick("batch_size")
        if batch_size > dataset_size:
            raise ConfigError(f"--batch-size {batch_size} is larger than the dataset ({dataset_size} images)")
        steps = self.steps
        if steps is None:
            steps = recipe.iterations or recipe.epochs * (dataset_size // batch_size)  # type: ignore[operator]
        names = ("architecture", "latent_dim", "generator_lr", "discriminator_lr", "beta_1", "beta_2",
                 "label_smoothing", "ema_decay", "jit_compile")
        resolved = dataclasses.replace(self, batch_size=batch_size, steps=steps, **{n: pick(n) for n in names})
        if resolved.conditional and not ARCHITECTURES[resolved.architecture].discriminator_outputs_logits:
            raise ConfigError(f"--conditional needs a dcgan architecture, not {resolved.architecture!r}")
        return resolved


def load_config(argv: Sequence[str] | None = None) -> TrainerConfig:
    config = parse_config(TrainerConfig, argv, ENV_PREFIX,
                          "Trains a GAN, checkpoints it and publishes generator versions for serving.",
                          prog="python -m trainer_service")
    return config.validate()
