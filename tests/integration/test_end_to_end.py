"""Trainer and sampler as real processes on loopback ports, a temporary store, the client in between."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from client import GanServiceError, SamplerClient, TrainerClient
from gan_common import store as store_layout
from gan_common.images import decode_png
from tests.conftest import REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


def start(module: str, args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store"


def trainer_args(store: Path, port: int, steps: int) -> list[str]:
    return ["--store", str(store), "--dataset-limit", "512", "--batch-size", "32", "--steps", str(steps),
            "--publish-every", "10", "--checkpoint-every", "5", "--log-every", "5", "--seed", "1",
            "--port", str(port), "--no-allow-download", "--no-evaluate"]  # scoring: tests/trainer/test_scoring.py


def test_train_publish_serve_fetch_switch_and_resume(store, tmp_path, fashion_mnist_dir):
    sampler_port, trainer_port = free_port(), free_port()
    sampler = start("sampler_service", ["--store", str(store), "--port", str(sampler_port),
                                        "--poll-seconds", "0.5"], tmp_path / "sampler.log")
    trainer = None
    try:
        client = SamplerClient(f"127.0.0.1:{sampler_port}", timeout=20)
        assert wait_until(lambda: client.health(timeout=2), 60, "sampler to answer", sampler) == "NOT_SERVING"
        with pytest.raises(GanServiceError, match="has not published"):
            client.generate(1)

        trainer_log = tmp_path / "trainer.log"
        trainer = start("trainer_service", trainer_args(store, trainer_port, steps=10_000), trainer_log)
        first = wait_until(lambda: client.info(timeout=2).model_version, 180, "the first version", trainer)
        result = client.generate(8, seed=3)
        assert result.model_version >= first and len(result.encoded) == 8
        pixels = [decode_png(data) for data in result.encoded]
        assert all(p.shape == (28, 28, 1) and p.dtype == np.uint8 for p in pixels)
        again = client.generate(8, seed=3, version=result.model_version)
        assert again.encoded == result.encoded  # same seed and version: byte-identical
        assert client.health() == "SERVING"

        status = TrainerClient(f"127.0.0.1:{trainer_port}").status()
        assert status.state == "TRAINING" and status.step > 0 and status.dataset == "fashion_mnist"

        newer = wait_until(lambda: (v := client.generate(1).model_version) > result.model_version and v,
                           180, "the sampler to switch to a newer version", trainer)
        assert newer in store_layout.list_versions(store)

        # A crash: SIGKILL, then the same command resumes from the newest checkpoint.
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(timeout=10)
        checkpointed = max(int(m) for m in re.findall(r"checkpoint saved at step (\d+)", trainer_log.read_text()))
        assert checkpointed >= newer
        trainer = start("trainer_service", trainer_args(store, trainer_port, steps=10_000), trainer_log)
        resumed_at = wait_until(
            lambda: re.search(r"resumed from \S+ at step (\d+)", trainer_log.read_text()), 120, "resume", trainer)
        assert int(resumed_at.group(1)) >= checkpointed > 0
        trainer_client = TrainerClient(f"127.0.0.1:{trainer_port}")
        wait_until(lambda: trainer_client.status(timeout=2).step > checkpointed, 120, "training to go on", trainer)

        # A graceful stop: SIGTERM checkpoints, publishes the final step and exits 0.
        trainer.send_signal(signal.SIGTERM)
        assert trainer.wait(timeout=60) == 0
        final = store_layout.latest_version(store)
        assert final > checkpointed
        wait_until(lambda: client.info(timeout=2).model_version == final, 60, "the final version")
    finally:
        if trainer is not None:
            stop(trainer)
        stop(sampler)


def test_trainer_cli_errors_are_one_line_without_traceback(tmp_path):
    cases = [(["--dataset", str(tmp_path / "missing")], "not found"),
             (["--steps", "-3"], "--steps must be positive"),
             (["--architecture", "resnet"], "invalid choice")]
    for args, message in cases:
        result = subprocess.run([sys.executable, "-m", "trainer_service", "--store", str(tmp_path / "s"),
                                 "--port", "0", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_sampler_cli_rejects_bad_settings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sampler_service", "--store", str(tmp_path),
                             "--max-count", "0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--max-count must be positive" in result.stderr
