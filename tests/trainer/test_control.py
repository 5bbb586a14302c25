"""The Trainer control API against real trainer processes: status, progress stream, checkpoint-now, publish
interval, graceful stop, SIGTERM, and the process's memory over many publishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from client import GanServiceError, TrainerClient
from client.__main__ import main as cli
from gan_common import store as store_layout
from tests.conftest import REPO_ROOT, free_port, wait_until
from trainer_service.control import ControlRequests, Published, TrainerNotRunning

NEVER = "1000000"  # a step count a test never reaches


def start_trainer(store: Path, port: int, *flags: str) -> subprocess.Popen:
    args = ["--store", str(store), "--dataset-limit", "256", "--batch-size", "32", "--steps", NEVER,
            "--publish-every", NEVER, "--checkpoint-every", NEVER, "--log-every", "1", "--seed", "3",
            "--port", str(port), "--no-evaluate", "--no-allow-download", *flags]
    log = (store.parent / "trainer.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "trainer_service", *args], cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def trainer_process(tmp_path, fashion_mnist_dir):
    """Starts a trainer that would run for ever; yields (process, client, store); kills it if a test fails."""
    started: list[subprocess.Popen] = []

    def start(*flags: str):
        store, port = tmp_path / "store", free_port()
        process = start_trainer(store, port, *flags)
        started.append(process)
        client = TrainerClient(f"127.0.0.1:{port}", timeout=120)
        wait_until(lambda: client.status(timeout=2).step >= 2, 180, "two training steps", process)
        return process, client, store

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def checkpoint_steps(store: Path) -> set[int]:
    return {int(path.name.split("-")[1].split(".")[0]) for path in (store / "checkpoints").glob("ckpt-*.index")}


def test_status_stream_checkpoint_now_publish_interval_and_graceful_stop(trainer_process, capsys):
    process, client, store = trainer_process()
    status = client.status()
    assert (status.state, status.strategy, status.num_replicas, status.publish_every) == (
        "TRAINING", "default", 1, int(NEVER))
    assert status.resident_memory_bytes > 100 * 2**20 and status.dataset == "fashion_mnist"
    updates = client.watch(timeout=120)
    steps = [next(updates).step for _ in range(3)]
    assert steps == sorted(steps) and steps[-1] > steps[0]  # one message per progress line
    updates.close()

    done = client.checkpoint_now()
    assert done.model_version == done.step >= 2
    assert store_layout.latest_version(store) == done.step and done.step in checkpoint_steps(store)
    assert client.status().last_published_version == done.step

    assert cli(["set-publish-interval", "--target", client.target, "3"]) == 0
    assert f"publishing every 3 steps (was {NEVER})" in capsys.readouterr().out
    assert client.status().publish_every == 3
    wait_until(lambda: (store_layout.latest_version(store) or 0) > done.step, 180, "a publish every 3 steps", process)
    assert [v for v in store_layout.list_versions(store) if v > done.step][0] % 3 == 0
    with pytest.raises(GanServiceError) as error:
        client.set_publish_interval(0)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and "positive" in error.value.details

    final = client.stop(wait=True)
    assert process.wait(timeout=120) == 0
    assert final.model_version == final.step == store_layout.latest_version(store)
    assert final.step in checkpoint_steps(store)


def test_sigterm_checkpoints_publishes_and_exits_0_then_resumes(trainer_process, tmp_path):
    process, client, store = trainer_process()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    final = store_layout.latest_version(store)
    assert final >= 2 and final in checkpoint_steps(store)
    resumed = start_trainer(store, free_port(), "--steps", str(final + 2))
    assert resumed.wait(timeout=300) == 0
    assert store_layout.latest_version(store) == final + 2
    assert f"resumed from {store / 'checkpoints' / f'ckpt-{final}'} at step {final}" in (
        tmp_path / "trainer.log").read_text()


def test_memory_stays_flat_over_many_publishes(trainer_process):
    """RSS after the 4th publish against the 16th: a leak per step or per publish (a graph or an
    exported model kept alive) would add megabytes per publish; allocator noise is a few MiB overall.
    The dense generator: the same steps, EMA, batch-norm refresh and export as the default DCGAN-k4,
    at a third of its publish time (1.7 s a publish against the DCGAN's 5 s on a 2-core AVX2 CPU; the
    DCGAN's export alone is 0.9 s, the rest mostly the refresh's 2048-image pass), and a leaked graph
    or export costs megabytes all the same."""
    process, client, store = trainer_process("--publish-every", "2", "--architecture", "dense")
    rss_at_version: dict[int, int] = {}
    for status in client.watch(timeout=600):
        rss_at_version.setdefault(status.last_published_version, status.resident_memory_bytes)
        if len(rss_at_version) > 16:
            break
    client.stop()
    assert process.wait(timeout=120) == 0
    versions = sorted(v for v in rss_at_version if v)
    early, late = rss_at_version[versions[3]], rss_at_version[versions[15]]
    print(f"RSS after publish 4: {early / 2**20:.1f} MiB, after publish 16: {late / 2**20:.1f} MiB")
    assert late - early < 48 * 2**20, (early, late)


def test_control_requests_are_answered_by_the_loop_and_refused_after_it_ends():
    control = ControlRequests(threading.Event(), publish_every=10)
    checkpoint, final = control.request_checkpoint(), control.request_stop()
    assert control.stop.is_set() and control.checkpoint_requested()
    control.answer_checkpoint_requests(Published(5, 5))
    assert checkpoint.result(timeout=0) == Published(5, 5) and not final.done()
    assert control.set_publish_every(4) == 10 and control.publish_every == 4
    control.close(Published(6, 6))
    assert final.result(timeout=0) == Published(6, 6)
    with pytest.raises(TrainerNotRunning):
        control.request_checkpoint()
