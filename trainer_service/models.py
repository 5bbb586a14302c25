"""Pure model builders: the generator/discriminator pairs of the seed tutorials. No I/O here.

`dcgan` is seeds 003/004 (the TensorFlow DCGAN tutorial), `dense` is seeds 000/002 (the Keras MLP GAN).
Both take the image shape, so they also build for other sizes (DCGAN needs a size divisible by 4).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
from keras import layers

ImageShape = tuple[int, int, int]


def build_dcgan_generator(latent_dim: int = 100, image_shape: ImageShape = (28, 28, 1)) -> keras.Model:
    height, width, channels = image_shape
    if height % 4 or width % 4:
        raise ValueError(f"the DCGAN generator needs a size divisible by 4, not {height}x{width}")
    return keras.Sequential([
        keras.Input(shape=(latent_dim,)),
        layers.Dense((height // 4) * (width // 4) * 256, use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Reshape((height // 4, width // 4, 256)),
        layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Conv2DTranspose(channels, (5, 5), strides=(2, 2), padding="same", use_bias=False,
                               activation="tanh"),
    ], name="generator")


def build_dcgan_discriminator(image_shape: ImageShape = (28, 28, 1)) -> keras.Model:
    """Outputs a logit (no activation), as in seeds 003/004."""
    return keras.Sequential([
        keras.Input(shape=image_shape),
        layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"),
        layers.LeakyReLU(),
        layers.Dropout(0.3),
        layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"),
        layers.LeakyReLU(),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(1),
    ], name="discriminator")


def build_dense_generator(latent_dim: int = 100, image_shape: ImageShape = (28, 28, 1)) -> keras.Model:
    height, width, channels = image_shape
    model_layers: list[layers.Layer] = [keras.Input(shape=(latent_dim,))]
    for units in (256, 512, 1024):
        model_layers += [layers.Dense(units), layers.LeakyReLU(negative_slope=0.2),
                         layers.BatchNormalization(momentum=0.8)]
    model_layers += [layers.Dense(height * width * channels, activation="tanh"),
                     layers.Reshape(image_shape)]
    return keras.Sequential(model_layers, name="generator")


def build_dense_discriminator(image_shape: ImageShape = (28, 28, 1)) -> keras.Model:
    """Outputs a probability (sigmoid), as in seeds 000/002."""
    return keras.Sequential([
        keras.Input(shape=image_shape),
        layers.Flatten(),
        layers.Dense(512),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Dense(256),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A generator/discriminator pair and the seed tutorial's training recipe for it."""

    name: str
    build_generator: Callable[[int, ImageShape], keras.Model]
    build_discriminator: Callable[[ImageShape], keras.Model]
    discriminator_outputs_logits: bool
    # The seed's defaults: flags override each of them.
    latent_dim: int
    batch_size: int
    generator_lr: float
    discriminator_lr: float
    beta_1: float
    beta_2: float
    epochs: int | None  # the tutorial's length in epochs, or
    iterations: int | None  # in single-batch iterations


ARCHITECTURES: dict[str, Architecture] = {
    # Seeds 003/004: Adam(1e-4) for both, BATCH_SIZE = 256, EPOCHS = 50, BCE on logits.
    "dcgan": Architecture("dcgan", build_dcgan_generator, build_dcgan_discriminator, True,
                          latent_dim=100, batch_size=256, generator_lr=1e-4, discriminator_lr=1e-4,
                          beta_1=0.9, beta_2=0.999, epochs=50, iterations=None),
    # Seeds 000/002: Adam(0.0002, 0.5) for both, train(epochs=10000, batch_size=64) where an
    # "epoch" is one batch, BCE on sigmoid outputs.
    "dense": Architecture("dense", build_dense_generator, build_dense_discriminator, False,
                          latent_dim=100, batch_size=64, generator_lr=2e-4, discriminator_lr=2e-4,
                          beta_1=0.5, beta_2=0.999, epochs=None, iterations=10000),
}
