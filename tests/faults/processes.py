"""Real trainer and sampler processes for the fault and fuzz tests: free loopback ports, one log file
each, all killed when the test ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import grpc

from gan_common import store as store_layout
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from tests.conftest import REPO_ROOT, free_port
from trainer_service.publish import publish_copy

T = TypeVar("T")

# The cheapest real training run: the dense GAN publishes in a couple of seconds, where the default
# recipe's EMA pass and DCGAN export take many times longer on two shared cores.
FAST_TRAINER_FLAGS = ["--dataset-limit", "512", "--batch-size", "32", "--architecture", "dense",
                      "--ema-decay", "0", "--seed", "1", "--log-every", "5", "--no-allow-download",
                      "--no-evaluate"]


class Service:
    """One service process started with this interpreter from the repository root."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as output:
            self.process = subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, env=env, stdout=output,
                                            stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 60) -> int:
        """Sends `sig` and waits for the exit status."""
        if self.alive():
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


class Services:
    """Starts services for one test (or module) and kills whatever is left at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Service] = []

    def _start(self, name: str, argv: list[str], port: int) -> Service:
        runs = sum(1 for service in self.started if service.log.name.startswith(f"{name}-")) + 1
        service = Service(argv, port, self.logs / f"{name}-{runs}.log")
        self.started.append(service)
        return service

    def sampler(self, store: Path, *flags: str, port: int | None = None) -> Service:
        port = port or free_port()
        return self._start("sampler", ["-m", "sampler_service", "--store", str(store), "--port", str(port),
                                       "--poll-seconds", "0.2", *flags], port)

    def trainer(self, store: Path, *flags: str, port: int | None = None) -> Service:
        port = port or free_port()
        return self._start("trainer", ["-m", "trainer_service", *FAST_TRAINER_FLAGS, "--store", str(store),
                                       "--port", str(port), *flags], port)

    def paused_trainer(self, pause: str, nth: int, marker: Path, store: Path, *flags: str) -> Service:
        """The real trainer that stops for good at its nth publish or checkpoint (see paused_trainer.py)."""
        port = free_port()
        return self._start("trainer", ["-m", "tests.faults.paused_trainer", pause, str(nth), str(marker),
                                       *FAST_TRAINER_FLAGS, "--store", str(store), "--port", str(port), *flags],
                           port)

    def stop_all(self) -> None:
        for service in self.started:
            service.kill()


def wait_until(condition: Callable[[], T], timeout: float, what: str, watched: Service | None = None) -> T:
    """Polls `condition` until it returns something truthy; RPC errors count as 'not yet'."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if watched is not None and not watched.alive():
            raise AssertionError(f"{watched.log.name} process exited ({watched.process.returncode}) while waiting "
                                 f"for {what}; its log ends:\n{watched.log_text()[-3000:]}")
        try:
            value = condition()
        except grpc.RpcError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_log(service: Service, pattern: str, timeout: float) -> re.Match:
    return wait_until(lambda: re.search(pattern, service.log_text(), re.MULTILINE), timeout,
                      f"{pattern!r} in {service.log.name}", service)


def sampler_stub(target: str, options: list[tuple[str, object]] | None = None) -> sampler_pb2_grpc.SamplerStub:
    return sampler_pb2_grpc.SamplerStub(grpc.insecure_channel(target, options=options or []))


def served_version(stub: sampler_pb2_grpc.SamplerStub) -> int:
    return stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=10).info.model_version


def loaded_versions(sampler: Service) -> list[int]:
    """Every version the sampler loaded, in order, from its log."""
    return [int(v) for v in re.findall(r"loaded version (\d+)", sampler.log_text())]


def newest_complete_checkpoint(store: Path) -> int:
    """The step that the `checkpoint` state file names: what a restarted trainer resumes from."""
    state = (store / store_layout.CHECKPOINTS_DIR / "checkpoint").read_text()
    return int(re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', state, re.MULTILINE).group(1))


def copy_version(store: Path, source: int, version: int) -> Path:
    """Publishes a copy of an existing version under a new number, atomically as the trainer does."""
    return publish_copy(store_layout.version_dir(store, source), store, version)
