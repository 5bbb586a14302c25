"""The adversarial training step of the seed tutorials, as one tf.function per step. No I/O here.

`GanTraining` holds everything a checkpoint must restore for an exact resume: both networks, both
optimizers, the EMA generator, the noise generator's state, the step counter and the data-order seed.
The step runs under a tf.distribute strategy (the default one on a single device): each replica trains
on its share of the global batch, the optimizers all-reduce the gradients, and the losses are averaged
over the global batch so that any number of replicas computes the same update.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer_service.models import Architecture

# Per-example losses; tf.nn.compute_average_loss divides by the global batch.
_bce_logits = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)
_bce_probabilities = keras.losses.BinaryCrossentropy(from_logits=False, reduction=None)


def discriminator_loss(real_output: tf.Tensor, fake_output: tf.Tensor, from_logits: bool = True,
                       real_target: float = 1.0) -> tf.Tensor:
    """Seeds 003/004, per example: BCE of real against ones plus BCE of fake against zeros. A
    real_target below 1 is one-sided label smoothing: it keeps D from growing overconfident on real
    images."""
    bce = _bce_logits if from_logits else _bce_probabilities
    return (bce(tf.fill(tf.shape(real_output), real_target), real_output)
            + bce(tf.zeros_like(fake_output), fake_output))


def generator_loss(fake_output: tf.Tensor, from_logits: bool = True) -> tf.Tensor:
    """The non-saturating loss, per example: BCE of fake against ones."""
    bce = _bce_logits if from_logits else _bce_probabilities
    return bce(tf.ones_like(fake_output), fake_output)


class GanTraining(tf.Module):
    """Build `generator` and `discriminator` inside `strategy.scope()`; the rest is created here.

    `train_step(iterator)` takes the next global batch from an iterator over
    `strategy.experimental_distribute_dataset(...)` inside the graph, so a step is one call with no
    Python work around it. `jit_compile` compiles each replica's update with XLA; `mixed_precision`
    expects models built under the mixed_float16 policy and scales the losses.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, architecture: Architecture,
                 *, batch_size: int, latent_dim: int, generator_lr: float, discriminator_lr: float,
                 beta_1: float, beta_2: float, seed: int, label_smoothing: float = 0.0,
                 ema_decay: float = 0.0, num_classes: int = 0, strategy: tf.distribute.Strategy | None = None,
                 jit_compile: bool = False, mixed_precision: bool = False) -> None:
        super().__init__(name="gan_training")
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        assert batch_size % replicas == 0, (batch_size, replicas)
        self.generator = generator
        self.discriminator = discriminator
        self.architecture = architecture
        self.batch_size = batch_size  # global: all replicas together
        self.replica_batch_size = batch_size // replicas
        self.latent_dim = latent_dim
        self.num_classes = num_classes  # 0: unconditional
        self.real_target = 1.0 - label_smoothing
        self.ema_decay = ema_decay
        self.mixed_precision = mixed_precision
        self.ema_generator = None
        with self.strategy.scope():
            if ema_decay > 0:
                self.ema_generator = keras.models.clone_model(generator)
                self.ema_generator.set_weights(generator.get_weights())
            self.generator_optimizer = self._optimizer(generator_lr, beta_1, beta_2)
            self.discriminator_optimizer = self._optimizer(discriminator_lr, beta_1, beta_2)
            # Built now so that a checkpoint restores their slots instead of deferring.
            self.generator_optimizer.build(generator.trainable_variables)
            self.discriminator_optimizer.build(discriminator.trainable_variables)
            # Created under the strategy, each replica draws its own stream.
            self.noise = tf.random.Generator.from_seed(seed)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.data_seed = tf.Variable(seed, dtype=tf.int64, trainable=False, name="data_seed")
        replica_step = self._simultaneous_step if architecture.discriminator_outputs_logits else self._alternating_step
        self._replica_step = tf.function(replica_step, jit_compile=jit_compile)
        self.train_step = tf.function(self._global_step)

    def _optimizer(self, learning_rate: float, beta_1: float, beta_2: float) -> keras.optimizers.Optimizer:
        adam = keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2)
        # float16 gradients underflow without loss scaling; the wrapper unscales them before Adam.
        return keras.optimizers.LossScaleOptimizer(adam) if self.mixed_precision else adam

    @property
    def serving_generator(self) -> keras.Model:
        """The generator to publish: the weights' moving average when EMA is on."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def checkpoint(self) -> tf.train.Checkpoint:
        extra = {"ema_generator": self.ema_generator} if self.ema_generator is not None else {}
        return tf.train.Checkpoint(
            **extra, generator=self.generator, discriminator=self.discriminator,
            generator_optimizer=self.generator_optimizer, discriminator_optimizer=self.discriminator_optimizer,
            noise=self.noise, step=self.step, data_seed=self.data_seed,
            dropout_rng={str(i): v for i, v in enumerate(self._seed_generator_states())})

    def _seed_generator_states(self) -> list:
        # Keras 3 keeps each Dropout layer's RNG state in a SeedGenerator that tf.train.Checkpoint
        # does not track through the model; without it a resumed run drops out different units.
        models = (self.generator, self.discriminator)
        return [v for m in models for v in m.non_trainable_variables if "seed_generator_state" in v.path]

    def _update_ema(self) -> None:
        # Warm-up as in tf.train.ExponentialMovingAverage(num_updates=step): early on the average
        # follows the weights closely instead of dragging the random initialisation along.
        step = tf.cast(self.step, tf.float32)
        decay = tf.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.ema_generator.trainable_variables, self.generator.trainable_variables):
            average.assign(decay * average + (1.0 - decay) * weight)

    def _global_step(self, iterator: tf.types.experimental.distributed.DistributedIterator
                     ) -> dict[str, tf.Tensor]:
        batch = next(iterator)
        per_replica = self.strategy.run(self._replica_step, args=batch if isinstance(batch, tuple) else (batch,))
        # Each replica's loss is its share of the global mean, so their sum is the mean.
        losses = {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                  for name, value in per_replica.items()}
        if self.ema_generator is not None:
            self._update_ema()
        self.step.assign_add(1)
        return losses

    def _latents(self) -> tf.Tensor:
        return self.noise.normal([self.replica_batch_size, self.latent_dim])

    def _conditioned(self, inputs: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor | list[tf.Tensor]:
        return inputs if labels is None else [inputs, labels]

    def _mean(self, per_example: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.batch_size)

    def _scaled(self, loss: tf.Tensor, optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
        """The loss to differentiate (inside the tape): scaled up under mixed precision, which the
        LossScaleOptimizer undoes on the gradients."""
        return optimizer.scale_loss(loss) if self.mixed_precision else loss

    def _simultaneous_step(self, real_images: tf.Tensor, real_labels: tf.Tensor | None = None
                           ) -> dict[str, tf.Tensor]:
        """Seeds 003/004: one tape per network, both updated from the same forward pass. Conditional
        models draw the fake images' classes uniformly."""
        fake_labels = None
        if self.num_classes:
            fake_labels = self.noise.uniform([self.replica_batch_size], 0, self.num_classes, dtype=tf.int32)
        gen_vars, disc_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated = self.generator(self._conditioned(self._latents(), fake_labels), training=True)
            real_output = self.discriminator(self._conditioned(real_images, real_labels), training=True)
            fake_output = self.discriminator(self._conditioned(generated, fake_labels), training=True)
            real_output, fake_output = tf.cast(real_output, tf.float32), tf.cast(fake_output, tf.float32)
            gen_loss = self._mean(generator_loss(fake_output))
            disc_loss = self._mean(discriminator_loss(real_output, fake_output, real_target=self.real_target))
            scaled_gen_loss = self._scaled(gen_loss, self.generator_optimizer)
            scaled_disc_loss = self._scaled(disc_loss, self.discriminator_optimizer)
        gen_grads = gen_tape.gradient(scaled_gen_loss, gen_vars)
        disc_grads = disc_tape.gradient(scaled_disc_loss, disc_vars)
        self.generator_optimizer.apply_gradients(zip(gen_grads, gen_vars))
        self.discriminator_optimizer.apply_gradients(zip(disc_grads, disc_vars))
        return {"generator_loss": gen_loss, "discriminator_loss": disc_loss}

    def _alternating_step(self, real_images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Seeds 000/002: D.train_on_batch(real, 1), D.train_on_batch(G.predict(z), 0), then
        gan.train_on_batch(z', 1) with D frozen; d_loss is the mean of the two D losses."""
        disc_vars = self.discriminator.trainable_variables
        fake_images = self.generator(self._latents(), training=False)  # predict(): inference mode
        losses = []
        for images, target in ((real_images, self.real_target), (fake_images, 0.0)):
            with tf.GradientTape() as tape:
                output = tf.cast(self.discriminator(images, training=True), tf.float32)
                loss = self._mean(_bce_probabilities(tf.fill(tf.shape(output), target), output))
                scaled_loss = self._scaled(loss, self.discriminator_optimizer)
            grads = tape.gradient(scaled_loss, disc_vars)
            self.discriminator_optimizer.apply_gradients(zip(grads, disc_vars))
            losses.append(loss)
        gen_vars = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            fake_output = self.discriminator(self.generator(self._latents(), training=True), training=False)
            gen_loss = self._mean(generator_loss(tf.cast(fake_output, tf.float32), from_logits=False))
            scaled_loss = self._scaled(gen_loss, self.generator_optimizer)
        grads = tape.gradient(scaled_loss, gen_vars)
        self.generator_optimizer.apply_gradients(zip(grads, gen_vars))
        return {"generator_loss": gen_loss, "discriminator_loss": 0.5 * (losses[0] + losses[1])}


def recompute_batch_norm_statistics(generator: keras.Model, latent_dim: int, num_classes: int = 0,
                                    samples: int = 2048, seed: int = 0) -> None:
    """Sets every BatchNormalization's moving statistics to those of `samples` generated images.

    Averaged weights need statistics of their own: the moving averages collected for the raw
    generator's weights (or an average of them) do not match the averaged weights' activations and
    make the published images worse than the raw generator's.
    """
    norms = [layer for layer in generator._flatten_layers(include_self=False, recursive=True)
             if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    latents = tf.random.stateless_normal([samples, latent_dim], seed=[seed, 0])
    if num_classes:
        latents = [latents, tf.random.stateless_uniform([samples], [seed, 1], 0, num_classes, dtype=tf.int32)]
    try:
        for layer in norms:
            layer.momentum = 0.0  # moving statistics := this batch's statistics
        generator(latents, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
