import dataclasses
import threading

import numpy as np
import pytest

from gan_common import store as store_layout
from gan_common.config_cli import ConfigError
from trainer_service.config import TrainerConfig
from trainer_service.progress import ProgressTracker, TrainerState
from trainer_service.train import Trainer


def tiny_config(store, **overrides) -> TrainerConfig:
    values = dict(store=str(store), dataset_limit=256, batch_size=32, steps=8, checkpoint_every=2,
                  publish_every=4, log_every=2, grid_size=2, seed=11, allow_download=False)
    values.update(overrides)
    return TrainerConfig(**values).validate()


def run_trainer(config: TrainerConfig) -> Trainer:
    trainer = Trainer(config, ProgressTracker(), threading.Event())
    trainer.run()
    return trainer


def weights(trainer: Trainer) -> list[np.ndarray]:
    return [v.numpy() for v in trainer.training.generator.variables + trainer.training.discriminator.variables]


@pytest.mark.parametrize("architecture", ["dcgan", "dense"])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path, fashion_mnist_dir, architecture):
    straight = run_trainer(tiny_config(tmp_path / "a", architecture=architecture))
    first_half = run_trainer(tiny_config(tmp_path / "b", architecture=architecture, steps=5))
    assert first_half.step == 5
    resumed = run_trainer(tiny_config(tmp_path / "b", architecture=architecture, seed=999))  # seed comes from the checkpoint
    assert resumed.step == straight.step == 8
    for a, b in zip(weights(straight), weights(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_run_publishes_checkpoints_and_reports_progress(tmp_path, fashion_mnist_dir):
    tracker = ProgressTracker()
    trainer = Trainer(tiny_config(tmp_path, steps=6), tracker, threading.Event())
    trainer.run()
    assert store_layout.list_versions(tmp_path) == [4, 6]  # every 4 steps and at the end
    meta = store_layout.read_metadata(tmp_path, 6)
    assert (meta.training_step, meta.latent_dim, meta.image_shape, meta.dataset) == (6, 100, (28, 28, 1),
                                                                                     "fashion_mnist")
    assert meta.extra["class_names"][0] == "t-shirt/top"
    assert (tmp_path / "models" / "6" / "samples.png").read_bytes().startswith(b"\x89PNG")
    progress, _ = tracker.snapshot()
    assert progress.state == TrainerState.FINISHED and progress.step == 6
    assert progress.last_checkpoint_step == 6 and progress.last_published_version == 6
    assert progress.images_per_second > 0
    assert list((tmp_path / "logs").iterdir())  # TensorBoard event file


def test_stop_request_checkpoints_and_publishes_what_was_trained(tmp_path, fashion_mnist_dir):
    stop = threading.Event()
    trainer = Trainer(tiny_config(tmp_path, steps=1000), ProgressTracker(), stop)
    original = trainer.training.train_step

    def step_then_stop(images):
        outputs = original(images)
        if int(trainer.training.step.numpy()) == 3:
            stop.set()  # what SIGTERM does
        return outputs

    trainer.training.train_step = step_then_stop
    assert trainer.run() == 3
    assert store_layout.latest_version(tmp_path) == 3
    assert run_trainer(tiny_config(tmp_path, steps=4)).step == 4  # resumed, not restarted


def test_seed_defaults_follow_the_tutorials():
    dcgan = TrainerConfig().with_seed_defaults(60000)
    assert (dcgan.batch_size, dcgan.generator_lr, dcgan.beta_1, dcgan.steps) == (256, 1e-4, 0.9, 50 * 234)
    dense = TrainerConfig(architecture="dense").with_seed_defaults(60000)
    assert (dense.batch_size, dense.generator_lr, dense.beta_1, dense.steps) == (64, 2e-4, 0.5, 10000)
    assert TrainerConfig(batch_size=16, steps=5).with_seed_defaults(100).batch_size == 16


@pytest.mark.parametrize("overrides, message", [
    ({"steps": 0}, "--steps must be positive"),
    ({"generator_lr": 3.0}, "--generator-lr"),
    ({"image_size": 30}, "divisible by 4"),
    ({"port": 70000}, "--port"),
])
def test_invalid_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(TrainerConfig(), **overrides).validate()


def test_resuming_with_another_architecture_is_refused(tmp_path, fashion_mnist_dir):
    run_trainer(tiny_config(tmp_path, steps=2))
    with pytest.raises(ConfigError, match="architecture 'dcgan' -> 'dense'"):
        Trainer(tiny_config(tmp_path, steps=4, architecture="dense"), ProgressTracker(), threading.Event())


def test_batch_larger_than_dataset_is_refused(tmp_path, fashion_mnist_dir):
    with pytest.raises(ConfigError, match="larger than the dataset"):
        Trainer(tiny_config(tmp_path, dataset_limit=10), ProgressTracker(), threading.Event())
