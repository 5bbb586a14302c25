"""The adversarial training step of the seed tutorials, as one tf.function per step. No I/O here.

`GanTraining` holds everything a checkpoint must restore for an exact resume: both networks, both
optimizers, the noise generator's state, the step counter and the data-order seed.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer_service.models import Architecture

_bce_logits = keras.losses.BinaryCrossentropy(from_logits=True)
_bce_probabilities = keras.losses.BinaryCrossentropy(from_logits=False)


def discriminator_loss(real_output: tf.Tensor, fake_output: tf.Tensor, from_logits: bool = True) -> tf.Tensor:
    """Seeds 003/004: BCE of real against ones plus BCE of fake against zeros."""
    bce = _bce_logits if from_logits else _bce_probabilities
    return bce(tf.ones_like(real_output), real_output) + bce(tf.zeros_like(fake_output), fake_output)


def generator_loss(fake_output: tf.Tensor, from_logits: bool = True) -> tf.Tensor:
    """The non-saturating loss: BCE of fake against ones."""
    bce = _bce_logits if from_logits else _bce_probabilities
    return bce(tf.ones_like(fake_output), fake_output)


class GanTraining(tf.Module):
    def __init__(self, generator: keras.Model, discriminator: keras.Model, architecture: Architecture,
                 *, batch_size: int, latent_dim: int, generator_lr: float, discriminator_lr: float,
                 beta_1: float, beta_2: float, seed: int) -> None:
        super().__init__(name="gan_training")
        self.generator = generator
        self.discriminator = discriminator
        self.architecture = architecture
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.generator_optimizer = keras.optimizers.Adam(generator_lr, beta_1=beta_1, beta_2=beta_2)
        self.discriminator_optimizer = keras.optimizers.Adam(discriminator_lr, beta_1=beta_1, beta_2=beta_2)
        # Built now so that a checkpoint restores their slots instead of deferring.
        self.generator_optimizer.build(generator.trainable_variables)
        self.discriminator_optimizer.build(discriminator.trainable_variables)
        self.noise = tf.random.Generator.from_seed(seed)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.data_seed = tf.Variable(seed, dtype=tf.int64, trainable=False, name="data_seed")
        step = self._simultaneous_step if architecture.discriminator_outputs_logits else self._alternating_step
        self.train_step = tf.function(step, jit_compile=False, reduce_retracing=True)

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            generator=self.generator, discriminator=self.discriminator,
            generator_optimizer=self.generator_optimizer, discriminator_optimizer=self.discriminator_optimizer,
            noise=self.noise, step=self.step, data_seed=self.data_seed,
            dropout_rng={str(i): v for i, v in enumerate(self._seed_generator_states())})

    def _seed_generator_states(self) -> list:
        # Keras 3 keeps each Dropout layer's RNG state in a SeedGenerator that tf.train.Checkpoint
        # does not track through the model; without it a resumed run drops out different units.
        models = (self.generator, self.discriminator)
        return [v for m in models for v in m.non_trainable_variables if "seed_generator_state" in v.path]

    def _latents(self) -> tf.Tensor:
        return self.noise.normal([self.batch_size, self.latent_dim])

    def _simultaneous_step(self, real_images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Seeds 003/004: one tape per network, both updated from the same forward pass."""
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated = self.generator(self._latents(), training=True)
            real_output = self.discriminator(real_images, training=True)
            fake_output = self.discriminator(generated, training=True)
            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)
        gen_grads = gen_tape.gradient(gen_loss, self.generator.trainable_variables)
        disc_grads = disc_tape.gradient(disc_loss, self.discriminator.trainable_variables)
        self.generator_optimizer.apply_gradients(zip(gen_grads, self.generator.trainable_variables))
        self.discriminator_optimizer.apply_gradients(zip(disc_grads, self.discriminator.trainable_variables))
        self.step.assign_add(1)
        return {"generator_loss": gen_loss, "discriminator_loss": disc_loss}

    def _alternating_step(self, real_images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Seeds 000/002: D.train_on_batch(real, 1), D.train_on_batch(G.predict(z), 0), then
        gan.train_on_batch(z', 1) with D frozen; d_loss is the mean of the two D losses."""
        disc_vars = self.discriminator.trainable_variables
        fake_images = self.generator(self._latents(), training=False)  # predict(): inference mode
        losses = []
        for images, target in ((real_images, tf.ones), (fake_images, tf.zeros)):
            with tf.GradientTape() as tape:
                output = self.discriminator(images, training=True)
                loss = _bce_probabilities(target(tf.shape(output)), output)
            self.discriminator_optimizer.apply_gradients(zip(tape.gradient(loss, disc_vars), disc_vars))
            losses.append(loss)
        with tf.GradientTape() as tape:
            fake_output = self.discriminator(self.generator(self._latents(), training=True), training=False)
            gen_loss = generator_loss(fake_output, from_logits=False)
        gen_vars = self.generator.trainable_variables
        self.generator_optimizer.apply_gradients(zip(tape.gradient(gen_loss, gen_vars), gen_vars))
        self.step.assign_add(1)
        return {"generator_loss": gen_loss, "discriminator_loss": 0.5 * (losses[0] + losses[1])}
