"""The judge: a small CNN classifier whose penultimate layer is the feature space for FID/KID/PR.

There are no Inception weights offline, and Inception features say little about 28x28 grayscale
anyway, so (like TF-GAN's MNIST classifier score) we train our own classifier once per dataset.

Input convention: float images in [-1, 1] (the GAN's tanh output range), shape (N, 28, 28) or
(N, 28, 28, 1), background at -1. uint8 images are refused rather than guessed at; convert them
with ``uint8_to_judge_input``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass

import keras
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SHAPE = (28, 28, 1)
FEATURE_LAYER = "features"


@dataclass(frozen=True)
class JudgeConfig:
    """Architecture and training settings; all of it goes into the judge's version hash."""

    conv_filters: tuple[int, ...] = (32, 64)  # one conv + 2x2 max-pool block per entry
    feature_dim: int = 128                    # width of the penultimate (feature) layer
    dropout: float = 0.3                      # after the feature layer, training only
    epochs: int = 2                           # ~90% test accuracy on Fashion-MNIST
    batch_size: int = 128
    learning_rate: float = 1e-3               # Adam
    seed: int = 0                             # seeds Python, numpy and TF before building


@dataclass(frozen=True)
class JudgeInfo:
    """What a saved judge says about itself (written to judge.json)."""

    dataset_name: str
    version: str                 # sha256 of config + dataset fingerprint
    class_names: tuple[str, ...]
    test_accuracy: float
    config: JudgeConfig
    created_at: str              # UTC, ISO 8601
    train_seconds: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> "JudgeInfo":
        d = json.loads(text)
        cfg = d.pop("config")
        cfg["conv_filters"] = tuple(cfg["conv_filters"])
        return JudgeInfo(
            **{**d, "class_names": tuple(d["class_names"]), "config": JudgeConfig(**cfg)}
        )


def uint8_to_judge_input(images: np.ndarray) -> np.ndarray:
    """Maps uint8 pixels [0, 255] to float32 [-1, 1], shape (N, 28, 28, 1)."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {x.dtype}")
    return _with_channel(x.astype(np.float32) / 127.5 - 1.0)


def _with_channel(x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape (N, 28, 28[, 1]), got {x.shape}")
    return x


def as_judge_input(images: np.ndarray) -> np.ndarray:
    """Validates the [-1, 1] float convention and returns float32 (N, 28, 28, 1)."""
    x = np.asarray(images)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"judge expects float images in [-1, 1], got {x.dtype}; "
                         "use uint8_to_judge_input for raw pixels")
    x = _with_channel(x.astype(np.float32, copy=False))
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"judge expects images in [-1, 1], got range [{lo:.3f}, {hi:.3f}]")
    if lo >= 0.0 and x.shape[0] >= 16:
        # Every batch of real or generated Fashion-MNIST has -1 background somewhere.
        log.warning("images lie in [%.3f, %.3f]: were they scaled to [0, 1] instead of [-1, 1]?",
                    lo, hi)
    return x


def build_judge_model(config: JudgeConfig, num_classes: int) -> keras.Model:
    """Pure builder: conv blocks -> dense feature layer -> logits."""
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = inputs
    for i, filters in enumerate(config.conv_filters):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(config.feature_dim, activation="relu", name=FEATURE_LAYER)(x)
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name="judge")


class Judge:
    """A trained classifier plus its self-description; maps images to features and classes."""

    def __init__(self, model: keras.Model, info: JudgeInfo) -> None:
        self.model = model
        self.info = info
        # One forward pass yields both outputs, so evaluation never runs the CNN twice.
        features = model.get_layer(FEATURE_LAYER).output
        self._both = keras.Model(model.inputs, [features, model.outputs[0]])

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def num_classes(self) -> int:
        return len(self.info.class_names)

    def features_and_classes(
        self, images: np.ndarray, batch_size: int = 500
    ) -> tuple[np.ndarray, np.ndarray]:
        """(features float32 (N, feature_dim), predicted class int64 (N,)) for [-1, 1] images."""
        x = as_judge_input(images)
        feats, logits = self._both.predict(x, batch_size=batch_size, verbose=0)
        return feats, np.argmax(logits, axis=1).astype(np.int64)

    def features(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        return self.features_and_classes(images, batch_size)[0]

    def predict_classes(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        return self.features_and_classes(images, batch_size)[1]


def dataset_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over shapes, dtypes and bytes: changes whenever the training data does."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}|{a.dtype.str}|".encode())
        h.update(a.data)
    return h.hexdigest()


def judge_version(config: JudgeConfig, num_classes: int, fingerprint: str) -> str:
    """Version hash of a judge: same architecture, settings and data give the same version."""
    payload = json.dumps(
        {"config": dataclasses.asdict(config), "num_classes": num_classes, "data": fingerprint},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def train_judge(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: tuple[str, ...],
    config: JudgeConfig = JudgeConfig(),
    dataset_name: str = "dataset",
) -> Judge:
    """Trains a judge from scratch on [-1, 1] images and measures its test accuracy."""
    train_x, test_x = as_judge_input(train_images), as_judge_input(test_images)
    train_y = np.asarray(train_labels).astype(np.int64)
    test_y = np.asarray(test_labels).astype(np.int64)
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError("image and label counts differ")
    num_classes = len(class_names)
    fingerprint = dataset_fingerprint(train_x, train_y, test_x, test_y)
    version = judge_version(config, num_classes, fingerprint)

    # Seeds weights, dropout and shuffling; bit-exact reruns would also need
    # tf.config.experimental.enable_op_determinism(), which is process-wide, so we leave it off.
    keras.utils.set_random_seed(config.seed)
    model = build_judge_model(config, num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.monotonic()
    model.fit(train_x, train_y, batch_size=config.batch_size, epochs=config.epochs,
              shuffle=True, verbose=0)
    seconds = time.monotonic() - start
    _, accuracy = model.evaluate(test_x, test_y, batch_size=500, verbose=0)
    log.info("judge %s trained in %.1fs: test accuracy %.4f", version[:12], seconds, accuracy)
    info = JudgeInfo(
        dataset_name=dataset_name,
        version=version,
        class_names=tuple(class_names),
        test_accuracy=float(accuracy),
        config=config,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        train_seconds=round(seconds, 2),
    )
    return Judge(model, info)
