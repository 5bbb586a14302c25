"""The training loop's outer shell: data, models, checkpoints, progress, publishing.

The pure pieces (models, the train step, the input pipeline) live in their own modules; this one does
the I/O around them. Restarting with the same store resumes from the newest checkpoint exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from pathlib import Path

import keras
import tensorflow as tf

from gan_common import images as image_utils
from gan_common import store as store_layout
from gan_common.config_cli import ConfigError
from trainer_service import publish
from trainer_service.config import TrainerConfig
from trainer_service.data import Dataset, load_dataset
from trainer_service.gan import GanTraining, recompute_batch_norm_statistics
from trainer_service.models import ARCHITECTURES, build_pair
from trainer_service.pipeline import training_batches
from trainer_service.progress import ProgressTracker, TrainerState

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"  # what a store's checkpoints were trained as; a resume must match it
_MODEL_DEFINING = ("architecture", "latent_dim", "image_shape", "conditional")


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _check_run_matches(checkpoint_dir: Path, run: dict) -> None:
    """Refuses to resume a checkpoint made for a different model, with a message saying what differs."""
    path = checkpoint_dir / RUN_FILE
    if not path.is_file():
        return
    previous = json.loads(path.read_text())
    differences = [f"{key} {previous.get(key)!r} -> {run[key]!r}" for key in _MODEL_DEFINING
                   if key in previous and previous[key] != run[key]]
    if differences:
        raise ConfigError(f"{checkpoint_dir} holds a run with other model settings ({'; '.join(differences)}); "
                          "use the same settings to resume, or another --store to start afresh")


class Trainer:
    """One training run against one store."""

    def __init__(self, config: TrainerConfig, tracker: ProgressTracker, stop: threading.Event) -> None:
        self.tracker = tracker
        self.stop = stop
        self.store = Path(config.store)
        self.checkpoint_dir = self.store / store_layout.CHECKPOINTS_DIR
        self.dataset: Dataset = load_dataset(config.dataset, config.image_size, limit=config.dataset_limit,
                                             allow_download=config.allow_download)
        self.config = config.resolved(len(self.dataset.images))
        self.run_description = self._describe()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _check_run_matches(self.checkpoint_dir, self.run_description)
        publish.remove_stale_temporaries(self.store)

        seed = self.config.seed if self.config.seed is not None else secrets.randbits(31)
        keras.utils.set_random_seed(seed)  # initial weights and dropout; a resume restores both
        self.architecture = ARCHITECTURES[self.config.architecture]
        cfg = self.config
        self.num_classes = 0
        if cfg.conditional:
            if self.dataset.labels is None:
                raise ConfigError(f"--conditional needs class labels, and dataset {self.dataset.name!r} has none "
                                  "(use IDX files with labels, an .npz with labels, or one sub-folder per class)")
            self.num_classes = int(self.dataset.labels.max()) + 1
        self.class_names = tuple(self.dataset.class_names or (str(i) for i in range(self.num_classes)))
        self.training = GanTraining(
            *build_pair(self.architecture, cfg.latent_dim, self.dataset.image_shape, self.num_classes),
            self.architecture,
            batch_size=cfg.batch_size, latent_dim=cfg.latent_dim, generator_lr=cfg.generator_lr,
            discriminator_lr=cfg.discriminator_lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2, seed=seed,
            label_smoothing=cfg.label_smoothing, ema_decay=cfg.ema_decay, num_classes=self.num_classes)
        self.manager = tf.train.CheckpointManager(self.training.checkpoint(), str(self.checkpoint_dir),
                                                  max_to_keep=cfg.keep_checkpoints)
        if self.manager.latest_checkpoint:
            self.training.checkpoint().restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            logger.info("resumed from %s at step %d", self.manager.latest_checkpoint, self.step)
        else:
            logger.info("no checkpoint in %s: starting at step 0 with seed %d", self.checkpoint_dir, seed)
        (self.checkpoint_dir / RUN_FILE).write_text(json.dumps(self.run_description, indent=2))
        self.last_checkpoint_step = self.step if self.manager.latest_checkpoint else 0
        self.last_published = store_layout.latest_version(self.store) or 0
        self.writer = tf.summary.create_file_writer(str(self.store / store_layout.LOGS_DIR))

    @property
    def step(self) -> int:
        return int(self.training.step.numpy())

    def _describe(self) -> dict:
        run = dataclasses.asdict(self.config)
        run.update(dataset=self.dataset.name, image_shape=list(self.dataset.image_shape),
                   dataset_size=len(self.dataset.images))
        return run

    def save_checkpoint(self) -> None:
        step = self.step
        if step != self.last_checkpoint_step:
            self.manager.save(checkpoint_number=step)
            self.last_checkpoint_step = step
            self.tracker.update(last_checkpoint_step=step)
            logger.info("checkpoint saved at step %d", step)

    def publish(self, losses: dict[str, float]) -> None:
        """Checkpoints first, so a published version never outruns the state a resume starts from."""
        self.save_checkpoint()
        step = self.step
        metadata = store_layout.ModelMetadata(
            latent_dim=self.config.latent_dim, artifact_path="saved_model", artifact_format="saved_model",
            model_version=step, training_step=step, image_shape=self.dataset.image_shape,
            output_range=(-1.0, 1.0), dataset=self.dataset.name, architecture=self.config.architecture,
            published_at=publish.utc_now_iso(), num_classes=self.num_classes,
            class_names=self.class_names if self.num_classes else tuple(self.dataset.class_names or ()),
            extra={"losses": losses,
                   "recipe": self.config.recipe, "ema_decay": self.config.ema_decay,
                   "trainer_config": self.run_description})
        generator = self.training.serving_generator
        if generator is not self.training.generator:
            recompute_batch_norm_statistics(generator, self.config.latent_dim, self.num_classes)
        folder = publish.publish_version(self.store, step, generator, metadata, self.config.grid_size)
        grid = image_utils.decode_png((folder / store_layout.SAMPLE_GRID_FILE).read_bytes())
        with self.writer.as_default(step=step):
            tf.summary.image("samples", grid[None])
        self.last_published = step
        self.tracker.update(last_published_version=step)

    def run(self) -> int:
        """Trains to the configured number of steps (or until `stop` is set); returns the final step."""
        cfg = self.config
        total = cfg.steps
        start = self.step
        self.tracker.update(state=TrainerState.TRAINING, step=start, total_steps=total,
                            last_checkpoint_step=self.last_checkpoint_step,
                            last_published_version=self.last_published)
        losses = {"generator_loss": 0.0, "discriminator_loss": 0.0}
        if start >= total:
            logger.info("already trained to step %d of %d", start, total)
        labels = self.dataset.labels if self.num_classes else None
        batches = iter(training_batches(self.dataset.images, cfg.batch_size,
                                        int(self.training.data_seed.numpy()), start, labels))
        window_start, window_steps = time.perf_counter(), 0
        deadline = time.monotonic() + (cfg.time_budget_seconds or float("inf"))
        step = start
        while step < total and not self.stop.is_set() and time.monotonic() < deadline:
            batch = next(batches)
            outputs = self.training.train_step(*batch) if labels is not None else self.training.train_step(batch)
            step += 1
            window_steps += 1
            if step % cfg.log_every == 0 or step == total:
                losses = {name: float(value) for name, value in outputs.items()}  # waits for the step
                elapsed = time.perf_counter() - window_start
                rate = window_steps * cfg.batch_size / elapsed
                eta = (total - step) * cfg.batch_size / rate
                logger.info("step %d/%d  d_loss %.4f  g_loss %.4f  %.0f img/s  ETA %s", step, total,
                            losses["discriminator_loss"], losses["generator_loss"], rate, format_duration(eta))
                self.tracker.update(step=step, images_per_second=rate, eta_seconds=eta, **losses)
                with self.writer.as_default(step=step):
                    for name, value in losses.items():
                        tf.summary.scalar(name, value)
                    tf.summary.scalar("images_per_second", rate)
                    tf.summary.scalar("learning_rate/generator", cfg.generator_lr)
                    tf.summary.scalar("learning_rate/discriminator", cfg.discriminator_lr)
                window_start, window_steps = time.perf_counter(), 0
            if step % cfg.publish_every == 0:
                self.publish(losses)
            elif step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        # Finished or stopped: nothing trained may be lost, and the last state is served.
        if self.last_published != self.step:
            self.publish(losses)
        self.save_checkpoint()
        self.writer.flush()
        finished = self.step >= total
        self.tracker.update(state=TrainerState.FINISHED if finished else TrainerState.STARTING, step=self.step,
                            message="finished" if finished else "stopped; run again to resume")
        logger.info("%s at step %d", "finished" if finished else "stopped", self.step)
        return self.step
