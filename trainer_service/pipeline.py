"""The tf.data input pipeline: a fixed order of batches, reproducible from (seed, step).

Epoch e visits the images in a stateless permutation of (seed, e), so a run resumed at step s feeds
exactly the batches a run that never stopped would have fed. The images stay in memory as uint8 (the
cache); each batch is a gather of shuffled indices, converted to float in parallel and prefetched, so
the train step never waits for data. Under tf.distribute every worker builds the same global batches
and keeps its own share of each (DATA sharding), so the order stays a function of (seed, step).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return num_images // batch_size


def training_batches(images: np.ndarray, batch_size: int, seed: int, start_step: int,
                     labels: np.ndarray | None = None) -> tf.data.Dataset:
    """Endless float32 batches in [-1, 1] (as the seeds normalise), starting at `start_step`; with
    `labels`, (images, int32 labels) pairs."""
    num_images = len(images)
    per_epoch = steps_per_epoch(num_images, batch_size)
    start_epoch, offset = divmod(start_step, per_epoch)
    pixels = tf.constant(images)  # uint8: a quarter of the float32 memory
    classes = None if labels is None else tf.constant(labels, dtype=tf.int32)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_images, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True)

    def to_float(indices: tf.Tensor) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
        batch = (tf.cast(tf.gather(pixels, indices), tf.float32) - 127.5) / 127.5
        return batch if classes is None else (batch, tf.gather(classes, indices))

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return (tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max)
            .flat_map(epoch_batches)
            .skip(offset)
            .map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))
