import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gan_common import store as store_layout
from gan_common.config_cli import ConfigError
from tests.conftest import REPO_ROOT
from trainer_service.config import TrainerConfig
from trainer_service.progress import ProgressTracker, TrainerState
from trainer_service.train import Trainer


def tiny_config(store, **overrides) -> TrainerConfig:
    values = dict(store=str(store), evaluate=False, dataset_limit=256, batch_size=32, steps=8, checkpoint_every=2,
                  publish_every=4, log_every=2, grid_size=2, seed=11, allow_download=False)
    values.update(overrides)
    return TrainerConfig(**values).validate()


def run_trainer(config: TrainerConfig) -> Trainer:
    trainer = Trainer(config, ProgressTracker(), threading.Event())
    trainer.run()
    return trainer


def train_in_new_process(store: Path, recipe: str, steps: int, seed: int) -> None:
    """`python -m trainer_service` as a user runs it: a resume always starts in a fresh process."""
    flags = ["--store", str(store), "--recipe", recipe, "--steps", str(steps), "--seed", str(seed),
             "--dataset-limit", "256", "--batch-size", "32", "--checkpoint-every", "2", "--publish-every", "4",
             "--log-every", "2", "--grid-size", "2", "--port", "0", "--no-evaluate", "--no-allow-download"]
    run = subprocess.run([sys.executable, "-m", "trainer_service", *flags], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]


def checkpoint_tensors(store: Path) -> dict[str, np.ndarray]:
    """Every saved tensor of the newest checkpoint: weights, optimizer slots, noise and dropout RNG
    states, step counter."""
    reader = tf.train.load_checkpoint(str(store / "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


@pytest.mark.parametrize("recipe", ["default", "seed-dcgan", "seed-dense"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, fashion_mnist_dir, recipe):
    train_in_new_process(tmp_path / "a", recipe, steps=8, seed=11)
    train_in_new_process(tmp_path / "b", recipe, steps=5, seed=11)
    assert store_layout.latest_version(tmp_path / "b") == 5
    train_in_new_process(tmp_path / "b", recipe, steps=8, seed=999)  # the seed comes from the checkpoint
    straight, resumed = checkpoint_tensors(tmp_path / "a"), checkpoint_tensors(tmp_path / "b")
    assert straight.keys() == resumed.keys() and straight["step/.ATTRIBUTES/VARIABLE_VALUE"] == 8
    # Same batches, noise, dropout and optimizer state. CPU kernels may sum in a thread-dependent order
    # (seen once in CI: 1e-8 apart), so allow float rounding; a wrong batch or RNG state moves weights by
    # about a learning rate (1e-4), far outside this tolerance.
    differences = {name: float(np.abs(straight[name] - resumed[name]).max()) if straight[name].dtype.kind == "f"
                   else float(not np.array_equal(straight[name], resumed[name])) for name in straight}
    assert max(differences.values()) <= 1e-5, {name: d for name, d in differences.items() if d}


def test_run_publishes_checkpoints_and_reports_progress(tmp_path, fashion_mnist_dir):
    tracker = ProgressTracker()
    trainer = Trainer(tiny_config(tmp_path, steps=6), tracker, threading.Event())
    trainer.run()
    assert store_layout.list_versions(tmp_path) == [4, 6]  # every 4 steps and at the end
    meta = store_layout.read_metadata(tmp_path, 6)
    assert (meta.training_step, meta.latent_dim, meta.image_shape, meta.dataset) == (6, 100, (28, 28, 1),
                                                                                     "fashion_mnist")
    assert meta.class_names[0] == "t-shirt/top" and meta.num_classes == 0
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


def test_seed_recipes_follow_the_tutorials_and_flags_override():
    dcgan = TrainerConfig(recipe="seed-dcgan").resolved(60000)
    assert (dcgan.architecture, dcgan.batch_size, dcgan.generator_lr, dcgan.beta_1, dcgan.steps) == (
        "dcgan", 256, 1e-4, 0.9, 50 * 234)
    assert (dcgan.label_smoothing, dcgan.ema_decay, dcgan.jit_compile) == (0.0, 0.0, False)
    dense = TrainerConfig(recipe="seed-dense").resolved(60000)
    assert (dense.architecture, dense.batch_size, dense.generator_lr, dense.beta_1, dense.steps) == (
        "dense", 64, 2e-4, 0.5, 10000)
    ours = TrainerConfig().resolved(60000)
    assert (ours.recipe, ours.architecture, ours.batch_size, ours.beta_1, ours.label_smoothing, ours.ema_decay,
            ours.jit_compile) == ("default", "dcgan-k4", 16, 0.5, 0.1, 0.999, True)
    custom = TrainerConfig(recipe="seed-dcgan", batch_size=16, steps=5, ema_decay=0.9, jit_compile=True).resolved(100)
    assert (custom.batch_size, custom.steps, custom.ema_decay, custom.generator_lr, custom.jit_compile) == (
        16, 5, 0.9, 1e-4, True)
    assert TrainerConfig(jit_compile=False).resolved(100).jit_compile is False


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
    with pytest.raises(ConfigError, match="architecture 'dcgan-k4' -> 'dense'"):
        Trainer(tiny_config(tmp_path, steps=4, recipe="seed-dense"), ProgressTracker(), threading.Event())


def test_time_budget_stops_and_publishes(tmp_path, fashion_mnist_dir):
    trainer = run_trainer(tiny_config(tmp_path, steps=100_000, time_budget_seconds=3))
    assert 0 < trainer.step < 100_000
    assert store_layout.latest_version(tmp_path) == trainer.step


def test_batch_larger_than_dataset_is_refused(tmp_path, fashion_mnist_dir):
    with pytest.raises(ConfigError, match="larger than the dataset"):
        Trainer(tiny_config(tmp_path, dataset_limit=10), ProgressTracker(), threading.Event())


def test_conditional_model_trains_resumes_and_publishes_class_grid(tmp_path, fashion_mnist_dir):
    trainer = run_trainer(tiny_config(tmp_path, conditional=True, steps=4))
    meta = store_layout.read_metadata(tmp_path, 4)
    assert meta.num_classes == 10 and meta.class_names[7] == "sneaker"
    generator = trainer.training.serving_generator
    images = np.asarray(generator([np.zeros((2, 100), np.float32), np.array([0, 7], np.int32)], training=False))
    assert images.shape == (2, 28, 28, 1)
    assert run_trainer(tiny_config(tmp_path, conditional=True, steps=6)).step == 6
    with pytest.raises(ConfigError, match="conditional"):
        Trainer(tiny_config(tmp_path, steps=8), ProgressTracker(), threading.Event())


def test_conditional_needs_labels_and_a_dcgan(tmp_path, fashion_mnist_dir):
    np.savez(tmp_path / "unlabelled.npz", images=np.zeros((64, 28, 28), np.uint8))
    with pytest.raises(ConfigError, match="needs class labels"):
        Trainer(tiny_config(tmp_path / "s", dataset=str(tmp_path / "unlabelled.npz"), conditional=True),
                ProgressTracker(), threading.Event())
    with pytest.raises(ConfigError, match="needs a dcgan architecture"):
        TrainerConfig(recipe="seed-dense", conditional=True).resolved(1000)


@pytest.mark.parametrize("flags", [{"jit_compile": True}, {"mixed_precision": True, "recipe": "seed-dense"}])
def test_xla_and_mixed_precision_train_and_publish_float32_generators(tmp_path, fashion_mnist_dir, flags):
    trainer = run_trainer(tiny_config(tmp_path, steps=2, publish_every=2, **flags))
    if flags.get("mixed_precision"):
        assert trainer.training.generator.dtype_policy.name == "mixed_float16"
    served = tf.saved_model.load(str(tmp_path / "models" / "2" / "saved_model"))
    images = served.serve(tf.zeros([2, 100]))
    assert images.dtype == tf.float32 and images.shape == (2, 28, 28, 1)


def test_the_recipes_xla_is_used_where_it_pays_and_the_flags_decide_when_given(tmp_path, fashion_mnist_dir):
    from trainer_service.distribution import xla_pays_off

    def jit_compile(name: str, **flags) -> bool:
        return Trainer(tiny_config(tmp_path / name, **flags), ProgressTracker(), threading.Event()).config.jit_compile

    assert jit_compile("recipe") is xla_pays_off()  # the default recipe asks for XLA; AVX-512 CPUs decline
    assert jit_compile("forced", jit_compile=True) is True
    assert jit_compile("refused", jit_compile=False) is False
    assert jit_compile("seed", recipe="seed-dcgan") is False


def test_checkpoint_request_before_the_first_step_is_carried_out_after_it(tmp_path, fashion_mnist_dir):
    from trainer_service.control import ControlRequests, Published

    stop = threading.Event()
    control = ControlRequests(stop, publish_every=4)
    answer = control.request_checkpoint()  # waiting when the loop starts, at step 0
    Trainer(tiny_config(tmp_path, steps=2, publish_every=100), ProgressTracker(), stop, control).run()
    assert answer.result(timeout=0) == Published(1, 1)  # never a models/0 of random weights
    assert store_layout.list_versions(tmp_path) == [1, 2]


def test_a_checkpoint_of_another_model_is_one_clear_error(tmp_path, fashion_mnist_dir):
    run_trainer(tiny_config(tmp_path, recipe="seed-dcgan", steps=2))  # no EMA generator in its checkpoint
    with pytest.raises(ConfigError, match=r"ckpt-2 does not fit this run's model \(Found \d+ Python objects"):
        Trainer(tiny_config(tmp_path, recipe="default", architecture="dcgan", steps=4), ProgressTracker(),
                threading.Event())
