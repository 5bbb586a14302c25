"""Class-conditional generation through a real sampler server and the client."""

import grpc
import pytest

from client import GanServiceError, SamplerClient
from client.__main__ import main as cli
from tests.conftest import publish_tiny_generator, wait_for_version
from trainer_service.data import FASHION_MNIST_CLASSES


@pytest.fixture
def conditional_target(start_sampler, tmp_path) -> str:
    server, stub = start_sampler()
    publish_tiny_generator(tmp_path, 3, class_names=FASHION_MNIST_CLASSES)
    wait_for_version(stub, 3)
    return f"127.0.0.1:{server.port}"


def test_generate_by_class_name_or_index(conditional_target):
    with SamplerClient(conditional_target) as sampler:
        info = sampler.info()
        assert info.conditional and info.class_names[7] == "sneaker"
        by_name = sampler.generate(4, seed=5, label="Sneaker")
        assert by_name.class_indices == [7, 7, 7, 7]
        by_index = sampler.generate(4, seed=5, label=7)
        assert by_index.encoded == by_name.encoded
        assert sampler.generate(4, seed=5, label="bag").encoded != by_name.encoded
        drawn = sampler.generate(16, seed=5)  # no label: classes drawn from the seed
        assert len(set(drawn.class_indices)) > 1
        assert sampler.generate(16, seed=5).class_indices == drawn.class_indices


@pytest.mark.parametrize("label, message", [("spaceship", "unknown class 'spaceship'"),
                                            (10, "class index 10 is out of range"),
                                            (-1, "out of range")])
def test_unknown_labels_are_invalid_argument(conditional_target, label, message):
    with SamplerClient(conditional_target) as sampler, pytest.raises(GanServiceError) as error:
        sampler.generate(1, label=label)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details and "7 (sneaker)" in error.value.details


def test_label_for_an_unconditional_model_is_refused(start_sampler, tmp_path):
    server, stub = start_sampler()
    publish_tiny_generator(tmp_path, 2)
    wait_for_version(stub, 2)
    with SamplerClient(f"127.0.0.1:{server.port}") as sampler, pytest.raises(GanServiceError) as error:
        sampler.generate(1, label="sneaker")
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and "not class-conditional" in error.value.details


def test_cli_label_flag(conditional_target, tmp_path, capsys):
    assert cli(["generate", "--target", conditional_target, "--count", "4", "--label", "sneaker",
                "--out", str(tmp_path / "sneakers.png")]) == 0
    assert (tmp_path / "sneakers.png").is_file()
    assert cli(["generate", "--target", conditional_target, "--label", "7", "--count", "1",
                "--out", str(tmp_path / "one.png")]) == 0
