"""The client library and CLI against real servers on loopback ports."""

import json

import grpc
import pytest
from PIL import Image

from client import GanServiceError, SamplerClient, TrainerClient
from client.__main__ import main as cli
from tests.conftest import free_port, publish_tiny_generator, wait_for_version
from trainer_service.progress import ProgressTracker, TrainerState
from trainer_service.server import create_server


@pytest.fixture
def sampler_target(start_sampler, tmp_path) -> str:
    server, stub = start_sampler()
    publish_tiny_generator(tmp_path, 9)
    wait_for_version(stub, 9)
    return f"127.0.0.1:{server.port}"


def test_generate_returns_pil_or_numpy_and_is_deterministic(sampler_target):
    with SamplerClient(sampler_target) as sampler:
        result = sampler.generate(16, seed=7)
        assert (len(result.images), result.model_version, result.seed) == (16, 9, 7)
        assert isinstance(result.images[0], Image.Image) and result.images[0].size == (28, 28)
        arrays = sampler.generate(16, seed=7, as_numpy=True, image_format="raw")
        assert arrays.images[0].shape == (28, 28, 1)
        assert [a.tobytes() for a in arrays.images] == [i.tobytes() for i in result.images]
        assert sampler.info().model_version == 9
        assert sampler.health() == "SERVING"


def test_errors_keep_the_status_code(sampler_target):
    with SamplerClient(sampler_target) as sampler:
        with pytest.raises(GanServiceError) as error:
            sampler.generate(1, version=12345)
        assert error.value.code == grpc.StatusCode.NOT_FOUND and "12345" in str(error.value)
        with pytest.raises(ValueError, match="image_format"):
            sampler.generate(1, image_format="jpeg")


def test_unreachable_server_is_unavailable_within_the_deadline():
    with SamplerClient(f"127.0.0.1:{free_port()}", timeout=2) as sampler:
        with pytest.raises(GanServiceError) as error:
            sampler.generate(1)
    assert error.value.code == grpc.StatusCode.UNAVAILABLE


def test_cli_generate_writes_a_grid_or_one_png_each(sampler_target, tmp_path, capsys):
    assert cli(["generate", "--target", sampler_target, "--count", "16", "--seed", "7",
                "--out", str(tmp_path / "grid.png")]) == 0
    assert "model version 9, seed 7" in capsys.readouterr().out
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (4 * 30 + 2, 4 * 30 + 2)
    assert cli(["generate", "--target", sampler_target, "--count", "3", "--out-dir", str(tmp_path / "each")]) == 0
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [
        "image_0000.png", "image_0001.png", "image_0002.png"]


def test_cli_info_and_health(sampler_target, capsys):
    assert cli(["info", "--target", sampler_target]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == 9
    assert cli(["health", "--target", sampler_target]) == 0


def test_cli_reports_errors_in_one_line(sampler_target, start_sampler, capsys):
    assert cli(["generate", "--target", sampler_target, "--version", "77"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: NOT_FOUND") and err.count("\n") == 1
    assert cli(["generate", "--target", f"127.0.0.1:{free_port()}", "--timeout", "2"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    empty, _ = start_sampler(store="/nonexistent-store")
    assert cli(["health", "--target", f"127.0.0.1:{empty.port}"]) == 1  # NOT_SERVING


def test_trainer_status_and_watch_against_a_real_trainer_server(capsys):
    tracker = ProgressTracker()
    server, port = create_server(tracker, lambda: {"dataset": "fashion_mnist", "architecture": "dcgan"},
                                 "127.0.0.1", 0)
    try:
        tracker.update(state=TrainerState.TRAINING, step=40, total_steps=50, last_published_version=40)
        with TrainerClient(f"127.0.0.1:{port}") as trainer:
            status = trainer.status()
            assert (status.state, status.step, status.dataset) == ("TRAINING", 40, "fashion_mnist")
            updates = trainer.watch(timeout=10)
            assert next(updates).step == 40
            tracker.update(step=50, state=TrainerState.FINISHED)
            assert [s.state for s in updates] == ["FINISHED"]  # the stream ends with training
        assert cli(["trainer-status", "--target", f"127.0.0.1:{port}"]) == 0
        assert json.loads(capsys.readouterr().out)["step"] == 50
    finally:
        server.stop(grace=0)
