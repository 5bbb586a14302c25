"""Fixtures shared by every room's tests: real data, tiny published models, servers on free ports."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import pytest  # noqa: E402

from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc  # noqa: E402
from trainer_service.publish import publish_untrained_generator as publish_tiny_generator  # noqa: E402,F401

REPO_ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail("real Fashion-MNIST is missing: `make test` installs Debian's dataset-fashion-mnist "
                    "(or run scripts/install_dataset.sh)")
    return FASHION_MNIST_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_sampler(tmp_path):
    """Starts real sampler servers on free loopback ports; yields a factory, stops them afterwards."""
    from sampler_service.config import SamplerConfig
    from sampler_service.server import SamplerServer

    servers = []

    def start(store=tmp_path, **overrides):
        config = SamplerConfig(store=str(store), port=0, poll_seconds=0.2, retry_failed_seconds=0.5,
                               **overrides).validate()
        server = SamplerServer(config)
        server.start()
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        return server, sampler_pb2_grpc.SamplerStub(channel)

    yield start
    for server in servers:
        server.stop(grace=1)


def wait_for_version(stub: sampler_pb2_grpc.SamplerStub, version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=5).info
            if info.model_version == version:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the sampler did not serve version {version} within {timeout}s")


def wait_until(condition, timeout: float, what: str, process=None):
    """Polls `condition` until it returns something truthy (RPC errors count as 'not yet'); fails at once
    if `process` (a Popen) exits meanwhile."""
    from client import GanServiceError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} while waiting for {what}")
        try:
            value = condition()
        except (GanServiceError, grpc.RpcError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def save_module_with_serve(version_dir, outputs) -> None:
    """A tf.Module SavedModel whose serve function returns `outputs(images)`, as hand-written exports do."""
    import keras
    import tensorflow as tf

    from trainer_service.models import build_dcgan_generator

    keras.utils.set_random_seed(3)
    module = tf.Module()
    module.generator = build_dcgan_generator()
    module.serve = tf.function(lambda z: outputs(module.generator(z, training=False)),
                               input_signature=[tf.TensorSpec([None, 100], tf.float32)])
    tf.saved_model.save(module, str(version_dir / "sm"))
    (version_dir / "metadata.json").write_text(json.dumps(
        {"latent_dim": 100, "artifact_path": "sm", "artifact_format": "saved_model"}))
