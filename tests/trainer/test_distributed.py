"""tf.distribute: the trainer under a MirroredStrategy on two logical CPU devices, as a real process
(logical devices must be set before TensorFlow initialises, so not in the pytest process)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from gan_common import store as store_layout
from tests.conftest import REPO_ROOT, free_port


def train(store, *flags: str) -> str:
    args = ["--store", str(store), "--dataset-limit", "256", "--batch-size", "32", "--publish-every", "2",
            "--checkpoint-every", "1", "--log-every", "1", "--seed", "5", "--port", str(free_port()),
            "--no-evaluate", "--no-allow-download", "--strategy", "mirrored", "--cpu-logical-devices", "2", *flags]
    result = subprocess.run([sys.executable, "-m", "trainer_service", *args], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_mirrored_strategy_on_two_logical_devices_trains_publishes_and_resumes(tmp_path, fashion_mnist_dir):
    log = train(tmp_path, "--steps", "4")
    assert "strategy mirrored: 2 replica(s)" in log
    assert store_layout.list_versions(tmp_path) == [2, 4]
    run = json.loads((tmp_path / "checkpoints" / "run.json").read_text())
    assert (run["strategy"], run["num_replicas"], run["batch_size"]) == ("mirrored", 2, 32)
    # The published EMA generator is an ordinary SavedModel that makes images.
    served = tf.saved_model.load(str(tmp_path / "models" / "4" / "saved_model"))
    images = served.serve(tf.random.stateless_normal([3, 100], seed=[1, 2])).numpy()
    assert images.shape == (3, 28, 28, 1) and np.all(np.abs(images) <= 1) and images.std() > 0

    log = train(tmp_path, "--steps", "6")
    assert "at step 4" in log and store_layout.latest_version(tmp_path) == 6


def test_multi_worker_strategy_two_workers_on_loopback(tmp_path, fashion_mnist_dir):
    """Two trainer processes as the two workers TF_CONFIG lists: they train together, and only the chief
    (worker 0) writes checkpoints and versions into the shared store."""
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    args = ["--store", str(tmp_path / "store"), "--dataset-limit", "256", "--batch-size", "32", "--steps", "4",
            "--publish-every", "2", "--checkpoint-every", "1", "--log-every", "2", "--seed", "5", "--port", "0",
            "--no-evaluate", "--no-allow-download", "--strategy", "multi-worker"]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "trainer_service", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, "TF_CONFIG": tf_config, "TMPDIR": str(tmp_path)}))
    try:
        logs = [process.communicate(timeout=600)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    assert [process.returncode for process in processes] == [0, 0], logs
    assert "2 replica(s) on worker-1 (not the chief" in logs[1]
    assert store_layout.list_versions(tmp_path / "store") == [2, 4]
    run = json.loads((tmp_path / "store" / "checkpoints" / "run.json").read_text())
    assert (run["strategy"], run["num_replicas"]) == ("multi-worker", 2)
    # The losses only: each worker's own images/s on the same line differ with the machine's noise.
    losses = [re.findall(r"step 4/4.*?d_loss (\S+)\s+g_loss (\S+)", log) for log in logs]
    assert losses[0] == losses[1] and losses[0]  # one model, trained together
    assert not list(tmp_path.glob("gan-trainer-*"))  # the worker's scratch checkpoints are gone
