"""Named training recipes: an architecture plus every hyperparameter, each overridable by a flag.

`seed-dcgan` and `seed-dense` are the tutorials exactly. `default` is ours, chosen by measurement with
bench/quality.py (README shows the figures): the textbook DCGAN settings of Radford et al. (Adam 2e-4,
beta_1 0.5, batch 64), one-sided label smoothing (Salimans et al. 2016), and an exponential moving
average of the generator's weights for serving (decay 0.99: in 15 minutes it beat both 0.999 and the raw
generator).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    architecture: str
    latent_dim: int
    batch_size: int
    generator_lr: float
    discriminator_lr: float
    beta_1: float
    beta_2: float
    label_smoothing: float  # the discriminator's target for real images is 1 - label_smoothing
    ema_decay: float  # 0 disables the EMA generator
    epochs: int | None  # the recipe's length in epochs, or
    iterations: int | None  # in steps


RECIPES: dict[str, Recipe] = {
    # Seeds 003/004: Adam(1e-4) for both, BATCH_SIZE = 256, EPOCHS = 50, BCE on logits.
    "seed-dcgan": Recipe("seed-dcgan", "dcgan", latent_dim=100, batch_size=256, generator_lr=1e-4,
                         discriminator_lr=1e-4, beta_1=0.9, beta_2=0.999, label_smoothing=0.0,
                         ema_decay=0.0, epochs=50, iterations=None),
    # Seeds 000/002: Adam(0.0002, 0.5) for both, train(epochs=10000, batch_size=64), where an
    # "epoch" is one batch; sigmoid outputs.
    "seed-dense": Recipe("seed-dense", "dense", latent_dim=100, batch_size=64, generator_lr=2e-4,
                         discriminator_lr=2e-4, beta_1=0.5, beta_2=0.999, label_smoothing=0.0,
                         ema_decay=0.0, epochs=None, iterations=10000),
    "default": Recipe("default", "dcgan", latent_dim=100, batch_size=64, generator_lr=2e-4,
                      discriminator_lr=2e-4, beta_1=0.5, beta_2=0.999, label_smoothing=0.1,
                      ema_decay=0.99, epochs=20, iterations=None),
}
