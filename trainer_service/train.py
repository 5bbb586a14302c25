"""The training loop's outer shell: data, models, checkpoints, progress, publishing.

The pure pieces (models, the train step, the input pipeline) live in their own modules; this one does
the I/O around them. Restarting with the same store resumes from the newest checkpoint exactly.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import keras
import tensorflow as tf

from gan_common import images as image_utils
from gan_common import store as store_layout
from gan_common.config_cli import ConfigError
from trainer_service import publish, scoring
from trainer_service.config import TrainerConfig
from trainer_service.control import ControlRequests, Published
from trainer_service.data import Dataset, load_dataset
from trainer_service.distribution import (configure_devices, has_gpu, is_chief, is_multi_worker, make_strategy,
                                          worker_name, worker_sum, xla_pays_off)
from trainer_service.gan import GanTraining, recompute_batch_norm_statistics
from trainer_service.models import ARCHITECTURES, build_pair
from trainer_service.pipeline import training_batches
from trainer_service.progress import ProgressTracker, TrainerState, resident_memory_bytes

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

    def __init__(self, config: TrainerConfig, tracker: ProgressTracker, stop: threading.Event,
                 control: ControlRequests | None = None) -> None:
        self.tracker = tracker
        self.stop = stop
        self.control = control or ControlRequests(stop, config.publish_every)
        configure_devices(config.cpu_logical_devices)
        self.strategy = make_strategy(config.strategy)  # before any other op: multi-worker sets up collectives
        self.is_chief = is_chief(self.strategy)
        self.multi_worker = is_multi_worker(self.strategy)
        self.sum_over_workers = worker_sum(self.strategy) if self.multi_worker else None
        self.store = Path(config.store)
        self.checkpoint_dir = self.store / store_layout.CHECKPOINTS_DIR
        self.dataset: Dataset = load_dataset(config.dataset, config.image_size, limit=config.dataset_limit,
                                             allow_download=config.allow_download)
        self.config = config.resolved(len(self.dataset.images))
        replicas = self.strategy.num_replicas_in_sync
        logger.info("strategy %s: %d replica(s) on %s", config.strategy, replicas,
                    worker_name(self.strategy) + ("" if self.is_chief else " (not the chief: writes no files)"))
        if self.config.batch_size % replicas:
            raise ConfigError(f"--batch-size {self.config.batch_size} must be divisible by the {replicas} replicas "
                              f"of --strategy {self.config.strategy}")
        if self.config.jit_compile and config.jit_compile is None:  # the recipe's XLA; --jit-compile forces it
            declined = None
            if replicas > 1 and not has_gpu():
                # XLA on CPU compiles a replica's step for CPU:0, and the replicas' variables (logical CPU
                # devices) live elsewhere.
                declined = f"{replicas} replicas on CPU (the recipe's --jit-compile is for one replica)"
            elif not xla_pays_off():
                declined = "this CPU has AVX-512, where TensorFlow's own kernels train faster than XLA's"
            if declined:
                logger.info("XLA off: %s; --jit-compile forces it", declined)
                self.config = dataclasses.replace(self.config, jit_compile=False)
        self.run_description = self._describe()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _check_run_matches(self.checkpoint_dir, self.run_description)
        if self.is_chief:
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
        if cfg.mixed_precision and not has_gpu():
            logger.warning("--mixed-precision on a CPU: float16 kernels are slower here than float32")
        with self.strategy.scope():
            keras.mixed_precision.set_global_policy("mixed_float16" if cfg.mixed_precision else "float32")
            try:
                models = build_pair(self.architecture, cfg.latent_dim, self.dataset.image_shape, self.num_classes)
            finally:
                keras.mixed_precision.set_global_policy("float32")  # the layers keep theirs
        self.training = GanTraining(
            *models, self.architecture,
            batch_size=cfg.batch_size, latent_dim=cfg.latent_dim, generator_lr=cfg.generator_lr,
            discriminator_lr=cfg.discriminator_lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2, seed=seed,
            label_smoothing=cfg.label_smoothing, ema_decay=cfg.ema_decay, num_classes=self.num_classes,
            strategy=self.strategy, jit_compile=cfg.jit_compile, mixed_precision=cfg.mixed_precision)
        # Every worker saves (saving may need collectives), but only the chief into the store; the
        # others write to a scratch folder that is deleted after each save.
        self.write_dir = self.checkpoint_dir if self.is_chief else Path(
            tempfile.mkdtemp(prefix=f"gan-trainer-{worker_name(self.strategy)}-"))
        self.manager = tf.train.CheckpointManager(self.training.checkpoint(), str(self.write_dir),
                                                  max_to_keep=cfg.keep_checkpoints)
        latest = tf.train.latest_checkpoint(str(self.checkpoint_dir))
        if latest:
            try:
                self.training.checkpoint().restore(latest).assert_existing_objects_matched()
            except AssertionError as error:  # e.g. EMA switched on, or a store from an older trainer
                raise ConfigError(
                    f"{latest} does not fit this run's model ({str(error).split('. ')[0]}); resume with the "
                    "settings it was trained with, or use another --store to start afresh") from error
            logger.info("resumed from %s at step %d", latest, self.step)
        else:
            logger.info("no checkpoint in %s: starting at step 0 with seed %d", self.checkpoint_dir, seed)
        if self.is_chief:
            (self.checkpoint_dir / RUN_FILE).write_text(json.dumps(self.run_description, indent=2))
        self.last_checkpoint_step = self.step if latest else 0
        self.last_published = store_layout.latest_version(self.store) or 0
        self.writer = (tf.summary.create_file_writer(str(self.store / store_layout.LOGS_DIR)) if self.is_chief
                       else tf.summary.create_noop_writer())
        self.scoring = (scoring.BackgroundScoring(scoring.VersionScorer(
            self.store, config.dataset, cfg.eval_samples, allow_download=cfg.allow_download), self._record_scores)
            if cfg.evaluate and self.is_chief else None)

    @property
    def step(self) -> int:
        return int(self.training.step.numpy())

    def _describe(self) -> dict:
        run = dataclasses.asdict(self.config)
        run.update(num_replicas=self.strategy.num_replicas_in_sync)
        run.update(dataset=self.dataset.name, image_shape=list(self.dataset.image_shape),
                   dataset_size=len(self.dataset.images))
        return run

    def save_checkpoint(self) -> None:
        step = self.step
        if step != self.last_checkpoint_step:
            self.manager.save(checkpoint_number=step)
            if not self.is_chief:
                shutil.rmtree(self.write_dir, ignore_errors=True)
            self.last_checkpoint_step = step
            self.tracker.update(last_checkpoint_step=step)
            logger.info("checkpoint saved at step %d", step)

    def publish(self, losses: dict[str, float]) -> None:
        """Checkpoints first, so a published version never outruns the state a resume starts from."""
        self.save_checkpoint()
        step = self.step
        if not self.is_chief:
            self.last_published = step  # the chief publishes this step
            return
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
        if self.config.mixed_precision:
            generator = self._float32_copy(generator)
        folder = publish.publish_version(self.store, step, generator, metadata, self.config.grid_size)
        # An export leaves its traced functions in reference cycles; collected now, memory is flat from one
        # publish to the next instead of a saw tooth of tens of MiB.
        gc.collect()
        grid = image_utils.decode_png((folder / store_layout.SAMPLE_GRID_FILE).read_bytes())
        with self.writer.as_default(step=step):
            tf.summary.image("samples", grid[None])
        self.last_published = step
        self.tracker.update(last_published_version=step)
        if self.scoring is not None:
            self.scoring.submit(step)

    def _float32_copy(self, generator: keras.Model) -> keras.Model:
        """Servers run float32: the same weights in a generator built under the float32 policy."""
        copy, _ = build_pair(self.architecture, self.config.latent_dim, self.dataset.image_shape, self.num_classes)
        copy.set_weights(generator.get_weights())
        return copy

    def _record_scores(self, version: int, result: dict) -> None:
        with self.writer.as_default(step=version):
            for name, value in scoring.scores_to_summaries(result).items():
                tf.summary.scalar(name, value)
        self.writer.flush()

    def batch_iterator(self, start_step: int) -> tf.types.experimental.distributed.DistributedIterator:
        """The global batches from `start_step` on, split across the replicas, for `train_step`."""
        labels = self.dataset.labels if self.num_classes else None
        batches = training_batches(self.dataset.images, self.config.batch_size, int(self.training.data_seed.numpy()),
                                   start_step, labels)
        return iter(self.strategy.experimental_distribute_dataset(batches))

    def run(self) -> int:
        """Trains to the configured number of steps (or until `stop` is set); returns the final step."""
        cfg = self.config
        total = cfg.steps
        start = self.step
        self.tracker.update(state=TrainerState.TRAINING, step=start, total_steps=total,
                            last_checkpoint_step=self.last_checkpoint_step,
                            last_published_version=self.last_published, publish_every=self.control.publish_every,
                            resident_memory_bytes=resident_memory_bytes())
        losses = {"generator_loss": 0.0, "discriminator_loss": 0.0}
        if start >= total:
            logger.info("already trained to step %d of %d", start, total)
        iterator = self.batch_iterator(start)
        window_start, window_steps = time.perf_counter(), 0
        deadline = time.monotonic() + (cfg.time_budget_seconds or float("inf"))
        step = start
        while True:
            stop, checkpoint_now = self._control_decisions(step, deadline)
            if checkpoint_now and self.step > 0:  # at step 0 (random weights) it waits for the first step
                self.publish(losses)
                self.control.answer_checkpoint_requests(Published(self.step, self.last_published))
            if stop or step >= total:
                break
            outputs = self.training.train_step(iterator)  # the whole step, input included, in one call
            step += 1
            window_steps += 1
            if step % cfg.log_every == 0 or step == total:
                losses = {name: float(value) for name, value in outputs.items()}  # waits for the step
                elapsed = time.perf_counter() - window_start
                rate = window_steps * cfg.batch_size / elapsed
                eta = (total - step) * cfg.batch_size / rate
                logger.info("step %d/%d  d_loss %.4f  g_loss %.4f  %.0f img/s  ETA %s", step, total,
                            losses["discriminator_loss"], losses["generator_loss"], rate, format_duration(eta))
                self.tracker.update(step=step, images_per_second=rate, eta_seconds=eta,
                                    resident_memory_bytes=resident_memory_bytes(), **losses)
                with self.writer.as_default(step=step):
                    for name, value in losses.items():
                        tf.summary.scalar(name, value)
                    tf.summary.scalar("images_per_second", rate)
                    tf.summary.scalar("learning_rate/generator", cfg.generator_lr)
                    tf.summary.scalar("learning_rate/discriminator", cfg.discriminator_lr)
                window_start, window_steps = time.perf_counter(), 0
            if step % self.control.publish_every == 0:
                self.publish(losses)
            elif step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        # Finished or stopped: nothing trained may be lost, and the last state is served.
        if self.last_published != self.step:
            self.publish(losses)
        self.save_checkpoint()
        finished = self.step >= total
        if self.scoring is not None:  # a finished run scores its final version; a stopped one leaves now
            self.scoring.close(wait=finished)
        self.writer.flush()
        self.tracker.update(state=TrainerState.FINISHED if finished else TrainerState.STARTING, step=self.step,
                            message="finished" if finished else "stopped; run again to resume")
        logger.info("%s at step %d", "finished" if finished else "stopped", self.step)
        self.control.close(Published(self.step, self.last_published))
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return self.step

    def _control_decisions(self, step: int, deadline: float) -> tuple[bool, bool]:
        """(stop, checkpoint now) before the next step. Workers of a multi-worker run must take the same
        decisions at the same step, so they pool their requests every --log-every steps (the chief's
        publish interval wins) and act on nothing in between."""
        stop = self.stop.is_set() or time.monotonic() >= deadline
        checkpoint_now = self.control.checkpoint_requested()
        if not self.multi_worker:
            return stop, checkpoint_now
        if step % self.config.log_every:
            return False, False
        stops, checkpoints, publish_every = self.sum_over_workers(
            [stop, checkpoint_now, self.control.publish_every if self.is_chief else 0])
        self.control.publish_every = int(publish_every)
        return stops > 0, checkpoints > 0
