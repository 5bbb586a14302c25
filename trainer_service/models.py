"""Pure model builders: the generator/discriminator pairs of the seed tutorials. No I/O here.

`dcgan` is seeds 003/004 (the TensorFlow DCGAN tutorial), `dense` is seeds 000/002 (the Keras MLP GAN),
`resize-dcgan` is the DCGAN with each strided transposed convolution replaced by nearest-neighbour
upsampling and a convolution, which avoids the checkerboard pattern of uneven kernel overlap
(Odena et al., "Deconvolution and Checkerboard Artifacts", 2016). `dcgan-k4` is the DCGAN with 4x4 kernels
(as Radford et al.'s DCGAN): a kernel the stride divides also overlaps evenly, and each convolution
costs 16/25 of the tutorial's. All take the image shape, so they
also build for other sizes (the DCGANs need a size divisible by 4).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import keras
from keras import layers

ImageShape = tuple[int, int, int]


def build_dcgan_generator(latent_dim: int = 100, image_shape: ImageShape = (28, 28, 1),
                          kernel_size: int = 5) -> keras.Model:
    height, width, channels = image_shape
    kernel = (kernel_size, kernel_size)
    if height % 4 or width % 4:
        raise ValueError(f"the DCGAN generator needs a size divisible by 4, not {height}x{width}")
    return keras.Sequential([
        keras.Input(shape=(latent_dim,)),
        layers.Dense((height // 4) * (width // 4) * 256, use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Reshape((height // 4, width // 4, 256)),
        layers.Conv2DTranspose(128, kernel, strides=(1, 1), padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Conv2DTranspose(64, kernel, strides=(2, 2), padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Conv2DTranspose(channels, kernel, strides=(2, 2), padding="same", use_bias=False,
                               activation="tanh"),
    ], name="generator")


def build_resize_dcgan_generator(latent_dim: int = 100, image_shape: ImageShape = (28, 28, 1)) -> keras.Model:
    height, width, channels = image_shape
    if height % 4 or width % 4:
        raise ValueError(f"the DCGAN generator needs a size divisible by 4, not {height}x{width}")
    return keras.Sequential([
        keras.Input(shape=(latent_dim,)),
        layers.Dense((height // 4) * (width // 4) * 256, use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Reshape((height // 4, width // 4, 256)),
        layers.Conv2D(128, (5, 5), padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.UpSampling2D(2, interpolation="nearest"),
        layers.Conv2D(64, (5, 5), padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.UpSampling2D(2, interpolation="nearest"),
        layers.Conv2D(channels, (5, 5), padding="same", activation="tanh"),
    ], name="generator")


def _dcgan_discriminator_features(kernel_size: int = 5) -> list[layers.Layer]:
    kernel = (kernel_size, kernel_size)
    return [
        layers.Conv2D(64, kernel, strides=(2, 2), padding="same"),
        layers.LeakyReLU(),
        layers.Dropout(0.3),
        layers.Conv2D(128, kernel, strides=(2, 2), padding="same"),
        layers.LeakyReLU(),
        layers.Dropout(0.3),
        layers.Flatten(),
    ]


def build_dcgan_discriminator(image_shape: ImageShape = (28, 28, 1), kernel_size: int = 5) -> keras.Model:
    """Outputs a logit (no activation), as in seeds 003/004."""
    return keras.Sequential([keras.Input(shape=image_shape), *_dcgan_discriminator_features(kernel_size),
                             layers.Dense(1)],
                            name="discriminator")


def build_conditional_generator(build_body: Callable[[int, ImageShape], keras.Model], latent_dim: int,
                                image_shape: ImageShape, num_classes: int) -> keras.Model:
    """G(z, y): a learned embedding of the class label joins the latent vector before the body."""
    latent = keras.Input(shape=(latent_dim,), name="latent")
    label = keras.Input(shape=(), dtype="int32", name="label")
    embedded = layers.Embedding(num_classes, latent_dim, name="label_embedding")(label)
    body = build_body(2 * latent_dim, image_shape)
    return keras.Model([latent, label], body(layers.Concatenate()([latent, embedded])), name="generator")


def build_projection_discriminator(image_shape: ImageShape, num_classes: int, kernel_size: int = 5) -> keras.Model:
    """D(x, y) = w·φ(x) + embed(y)·φ(x): the projection discriminator (Miyato & Koyama, 2018) on the
    DCGAN discriminator's features; outputs a logit."""
    image = keras.Input(shape=image_shape, name="image")
    label = keras.Input(shape=(), dtype="int32", name="label")
    features = keras.Sequential([keras.Input(shape=image_shape), *_dcgan_discriminator_features(kernel_size)],
                                name="features")(image)
    unconditional = layers.Dense(1, name="logit")(features)
    embedded = layers.Embedding(num_classes, features.shape[-1], name="label_projection")(label)
    projection = layers.Dot(axes=1, name="projection")([embedded, features])
    return keras.Model([image, label], layers.Add()([unconditional, projection]), name="discriminator")


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
    """A generator/discriminator pair and how its tutorial updates it."""

    name: str
    build_generator: Callable[[int, ImageShape], keras.Model]
    build_discriminator: Callable[[ImageShape], keras.Model]
    # True: BCE on logits, both networks updated from one forward pass (seeds 003/004).
    # False: sigmoid outputs, D on real, D on G.predict(z), then G through frozen D (seeds 000/002).
    discriminator_outputs_logits: bool
    kernel_size: int = 5  # of the dcgan convolutions; the conditional discriminator uses it too


def build_pair(architecture: Architecture, latent_dim: int, image_shape: ImageShape,
               num_classes: int = 0) -> tuple[keras.Model, keras.Model]:
    """The (generator, discriminator) of an architecture; class-conditional when num_classes > 0."""
    if num_classes == 0:
        return architecture.build_generator(latent_dim, image_shape), architecture.build_discriminator(image_shape)
    if not architecture.discriminator_outputs_logits:
        raise ValueError(f"the {architecture.name} architecture has no class-conditional form; use a dcgan one")
    return (build_conditional_generator(architecture.build_generator, latent_dim, image_shape, num_classes),
            build_projection_discriminator(image_shape, num_classes, architecture.kernel_size))


ARCHITECTURES: dict[str, Architecture] = {
    "dcgan": Architecture("dcgan", build_dcgan_generator, build_dcgan_discriminator, True),
    "resize-dcgan": Architecture("resize-dcgan", build_resize_dcgan_generator, build_dcgan_discriminator, True),
    "dcgan-k4": Architecture("dcgan-k4", functools.partial(build_dcgan_generator, kernel_size=4),
                             functools.partial(build_dcgan_discriminator, kernel_size=4), True, kernel_size=4),
    "dense": Architecture("dense", build_dense_generator, build_dense_discriminator, False),
}
