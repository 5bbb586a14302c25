"""Training throughput: the tutorial's DCGAN step against our trainer's, and against the machine's limit.

    python bench/train_throughput.py                          # 5 rounds of 10 s per candidate
    python bench/train_throughput.py --seconds 5 --rounds 1   # a quick look

Candidates, all on the same real Fashion-MNIST images:
  tutorial     seeds 003/004 exactly: their models, Adam(1e-4), BATCH_SIZE = 256, their
               `from_tensor_slices(...).shuffle(60000).batch(256)` pipeline and their @tf.function train_step
  ours         our trainer's step (GanTraining + its input pipeline, the call Trainer.run makes) on the
               seed-dcgan recipe: the same architecture and batch size
  ours + XLA   the same with --jit-compile
  default      our default recipe (DCGAN with 4x4 kernels, batch 16, label smoothing, EMA generator) with
               and without XLA; "(default here)" marks the one the trainer picks on this machine (XLA is
               off on CPUs with AVX-512, where it is slower)
The candidates take turns for --seconds each, --rounds times, so that a shared or throttled CPU slows all
of them alike; the table shows each one's median, in images per wall-clock second and, steadier on a
machine that others share, in images per CPU-second this process used. The machine's limit is the measured FLOP/s of a large
float32 tf.matmul, taken in turn with the candidates. FLOPs per image count the multiply-adds of the
Dense/Conv/ConvTranspose layers (2 FLOPs each) of one step: G forward and backward (3x its forward cost)
and D forward and backward on the real and on the fake batch (2 x 3x its forward cost); BatchNorm,
activations and the optimizer are left out, so the fraction is a slight underestimate.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from trainer_service.config import TrainerConfig  # noqa: E402
from trainer_service.data import load_dataset  # noqa: E402
from trainer_service.distribution import xla_pays_off  # noqa: E402
from trainer_service.progress import ProgressTracker  # noqa: E402
from trainer_service.recipes import RECIPES  # noqa: E402
from trainer_service.train import Trainer  # noqa: E402

Candidate = tuple[str, int, Callable[[], None], float]  # name, batch size, one step, FLOPs per image


def tutorial_candidate(images: np.ndarray) -> tuple[Callable[[], None], keras.Model, keras.Model]:
    """Seed 004's code, copied as it stands (only tf.keras spelled as the installed Keras)."""
    train_images = images.reshape(images.shape[0], 28, 28, 1).astype("float32")
    train_images = (train_images - 127.5) / 127.5
    BUFFER_SIZE = 60000  # noqa: N806 (the tutorial's names)
    BATCH_SIZE = 256  # noqa: N806
    train_dataset = tf.data.Dataset.from_tensor_slices(train_images).shuffle(BUFFER_SIZE).batch(BATCH_SIZE)

    def make_generator_model():  # noqa: ANN202
        model = tf.keras.Sequential()
        model.add(layers.Dense(7*7*256, use_bias=False, input_shape=(100,)))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU())
        model.add(layers.Reshape((7, 7, 256)))
        model.add(layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU())
        model.add(layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False))
        model.add(layers.BatchNormalization())
        model.add(layers.LeakyReLU())
        model.add(layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False,
                                         activation="tanh"))
        return model

    def make_discriminator_model():  # noqa: ANN202
        model = tf.keras.Sequential()
        model.add(layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same", input_shape=[28, 28, 1]))
        model.add(layers.LeakyReLU())
        model.add(layers.Dropout(0.3))
        model.add(layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"))
        model.add(layers.LeakyReLU())
        model.add(layers.Dropout(0.3))
        model.add(layers.Flatten())
        model.add(layers.Dense(1))
        return model

    generator = make_generator_model()
    discriminator = make_discriminator_model()
    cross_entropy = tf.keras.losses.BinaryCrossentropy(from_logits=True)

    def discriminator_loss(real_output, fake_output):  # noqa: ANN001, ANN202
        real_loss = cross_entropy(tf.ones_like(real_output), real_output)
        fake_loss = cross_entropy(tf.zeros_like(fake_output), fake_output)
        total_loss = real_loss + fake_loss
        return total_loss

    def generator_loss(fake_output):  # noqa: ANN001, ANN202
        return cross_entropy(tf.ones_like(fake_output), fake_output)

    generator_optimizer = tf.keras.optimizers.Adam(1e-4)
    discriminator_optimizer = tf.keras.optimizers.Adam(1e-4)
    noise_dim = 100

    @tf.function
    def train_step(images):  # noqa: ANN001, ANN202
        noise = tf.random.normal([BATCH_SIZE, noise_dim])

        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = generator(noise, training=True)

            real_output = discriminator(images, training=True)
            fake_output = discriminator(generated_images, training=True)

            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)

        gradients_of_generator = gen_tape.gradient(gen_loss, generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, discriminator.trainable_variables)

        generator_optimizer.apply_gradients(zip(gradients_of_generator, generator.trainable_variables))
        discriminator_optimizer.apply_gradients(zip(gradients_of_discriminator,
                                                    discriminator.trainable_variables))

    # The tutorial's train(): `for image_batch in dataset: train_step(image_batch)`, epoch after epoch.
    batches = iter(train_dataset.repeat())

    def step() -> None:
        train_step(next(batches))

    return step, generator, discriminator


def ours_candidate(store: Path, images_limit: int, **flags: object) -> tuple[Callable[[], None], Trainer]:
    config = TrainerConfig(store=str(store), dataset_limit=images_limit, evaluate=False, allow_download=False,
                           seed=1, **flags).validate()
    trainer = Trainer(config, ProgressTracker(), threading.Event())
    iterator = trainer.batch_iterator(trainer.step)

    def step() -> None:
        trainer.training.train_step(iterator)

    return step, trainer


def forward_macs(model: keras.Model) -> int:
    """Multiply-adds of one image through the Dense/Conv2D/Conv2DTranspose layers."""
    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, layers.Dense):
            total += int(np.prod(layer.kernel.shape))
        elif isinstance(layer, layers.Conv2DTranspose):  # each input pixel scatters a kernel
            _, height, width, _ = layer.input.shape
            total += height * width * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, layers.Conv2D):  # each output pixel gathers a kernel
            _, height, width, _ = layer.output.shape
            total += height * width * int(np.prod(layer.kernel.shape))
    return total


def train_flops_per_image(generator: keras.Model, discriminator: keras.Model) -> float:
    return 2.0 * 3 * (forward_macs(generator) + 2 * forward_macs(discriminator))


def matmul_flops_per_second(seconds: float, size: int = 2048) -> float:
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    multiply = tf.function(lambda x, y: tf.matmul(x, y))
    multiply(a, b).numpy()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = multiply(a, b)
        count += 1
    result.numpy()
    return count * 2 * size**3 / (time.perf_counter() - started)


def images_per_second(step: Callable[[], None], batch_size: int, seconds: float) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second of this process)."""
    # Eager execution is synchronous (TensorFlow's default): a call returns when its step is done.
    count, started, cpu_started = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        step()
        count += 1
    images = count * batch_size
    return images / (time.perf_counter() - started), images / (time.process_time() - cpu_started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per candidate per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the table shows medians")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps per candidate (tracing)")
    parser.add_argument("--dataset-limit", type=int, default=60000, help="Fashion-MNIST images to train on")
    parser.add_argument("--no-xla", action="store_true", help="skip the --jit-compile candidates")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message="Do not pass an `input_shape`")  # the tutorial's style

    images = load_dataset("fashion_mnist", 28, limit=args.dataset_limit, allow_download=False).images
    candidates: list[Candidate] = []
    tutorial_step, generator, discriminator = tutorial_candidate(images)
    dcgan_flops = train_flops_per_image(generator, discriminator)
    candidates.append(("tutorial train_step (seeds 003/004)", 256, tutorial_step, dcgan_flops))
    scratch = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    variants = [("ours, seed-dcgan recipe", {"recipe": "seed-dcgan"}),
                ("ours, seed-dcgan recipe + XLA", {"recipe": "seed-dcgan", "jit_compile": True}),
                ("ours, default recipe without XLA", {"recipe": "default", "jit_compile": False}),
                ("ours, default recipe with XLA", {"recipe": "default", "jit_compile": True})]
    # The trainer uses the default recipe's XLA only where it pays (trainer_service.distribution.xla_pays_off).
    xla_by_default = RECIPES["default"].jit_compile and xla_pays_off()
    for index, (name, flags) in enumerate(variants):
        if args.no_xla and flags.get("jit_compile", RECIPES[flags["recipe"]].jit_compile):
            continue
        if flags["recipe"] == "default" and flags["jit_compile"] == xla_by_default:
            name += " (default here)"
        step, trainer = ours_candidate(scratch / str(index), args.dataset_limit, **flags)
        flops = train_flops_per_image(trainer.training.generator, trainer.training.discriminator)
        candidates.append((name, trainer.config.batch_size, step, flops))

    for name, _, step, _ in candidates:
        for _ in range(args.warmup_steps):
            step()
        print(f"warmed up: {name}", file=sys.stderr, flush=True)
    rates: dict[str, list[float]] = {name: [] for name, *_ in candidates}
    per_cpu_second: dict[str, list[float]] = {name: [] for name, *_ in candidates}
    limits: list[float] = []
    for round_index in range(args.rounds):
        limits.append(matmul_flops_per_second(min(args.seconds, 10.0)))
        for name, batch, step, _ in candidates:
            rate, cpu_rate = images_per_second(step, batch, args.seconds)
            rates[name].append(rate)
            per_cpu_second[name].append(cpu_rate)
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    shutil.rmtree(scratch, ignore_errors=True)  # the trainers' stores: nothing was published
    limit = statistics.median(limits)
    baseline = statistics.median(rates[candidates[0][0]])
    cpu_baseline = statistics.median(per_cpu_second[candidates[0][0]])
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, "
          f"{len(tf.config.list_physical_devices('GPU'))} GPUs; {args.rounds} rounds of {args.seconds:g} s each")
    print(f"matmul 2048x2048 float32: {limit / 1e9:.1f} GFLOP/s (median; rounds: "
          f"{', '.join(f'{x / 1e9:.1f}' for x in limits)})")
    print(f"train step FLOPs per image (dcgan): {dcgan_flops / 1e6:.0f} MFLOP")
    print()
    name_width = max(len(name) for name, *_ in candidates)
    print(f"| {'candidate':{name_width}s} | batch | img/s | vs tutorial | GFLOP/s | of matmul | img/CPU-s | vs tutorial "
          f"| rounds (img/s) |")
    print(f"|{'-' * (name_width + 2)}|-------|-------|-------------|---------|-----------|-----------|-------------"
          f"|----------------|")
    for name, batch, _, flops in candidates:
        rate, cpu_rate = statistics.median(rates[name]), statistics.median(per_cpu_second[name])
        print(f"| {name:{name_width}s} | {batch:5d} | {rate:5.1f} | {rate / baseline:10.2f}x "
              f"| {rate * flops / 1e9:7.1f} | {rate * flops / limit:9.0%} | {cpu_rate:9.1f} "
              f"| {cpu_rate / cpu_baseline:10.2f}x "
              f"| {' '.join(f'{r:.0f}' for r in rates[name])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
