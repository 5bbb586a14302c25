"""Named training recipes: an architecture plus every hyperparameter, each overridable by a flag.

`seed-dcgan` and `seed-dense` are the tutorials exactly. `default` is ours, chosen by measurement with
bench/quality.py (README shows the figures): the textbook DCGAN settings of Radford et al. (Adam 2e-4,
beta_1 0.5) with their 4x4 kernels (dcgan-k4: no checkerboard overlap, 16/25 of the tutorial's cost),
one-sided label smoothing (Salimans et al. 2016), batch 16 compiled with XLA, and an exponential moving
average of the generator's weights for serving (decay 0.999). On a CPU, quality per minute follows the
number of updates: batch 16, 4x4 kernels and XLA make eight times the updates of the earlier default
(tutorial kernels, batch 64, no XLA) in the same time, and its 5-minute FID fell from 55 to 16.
`jit_compile` is what the recipe asks for; the trainer declines it where XLA is slower than TensorFlow's
own kernels (CPUs with AVX-512: trainer_service.distribution.xla_pays_off).
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
    jit_compile: bool  # XLA: the same update, compiled; on an AVX2 CPU it pays off at small batches
    epochs: int | None  # the recipe's length in epochs, or
    iterations: int | None  # in steps


RECIPES: dict[str, Recipe] = {
    # Seeds 003/004: Adam(1e-4) for both, BATCH_SIZE = 256, EPOCHS = 50, BCE on logits.
    "seed-dcgan": Recipe("seed-dcgan", "dcgan", latent_dim=100, batch_size=256, generator_lr=1e-4,
                         discriminator_lr=1e-4, beta_1=0.9, beta_2=0.999, label_smoothing=0.0,
                         ema_decay=0.0, jit_compile=False, epochs=50, iterations=None),
    # Seeds 000/002: Adam(0.0002, 0.5) for both, train(epochs=10000, batch_size=64), where an
    # "epoch" is one batch; sigmoid outputs.
    "seed-dense": Recipe("seed-dense", "dense", latent_dim=100, batch_size=64, generator_lr=2e-4,
                         discriminator_lr=2e-4, beta_1=0.5, beta_2=0.999, label_smoothing=0.0,
                         ema_decay=0.0, jit_compile=False, epochs=None, iterations=10000),
    "default": Recipe("default", "dcgan-k4", latent_dim=100, batch_size=16, generator_lr=2e-4,
                      discriminator_lr=2e-4, beta_1=0.5, beta_2=0.999, label_smoothing=0.1,
                      ema_decay=0.999, jit_compile=True, epochs=20, iterations=None),
}
