"""The sampler against real servers on loopback ports and real published models."""

import json
import threading
import time

import grpc
import keras
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from gan_common.images import decode_png, latents_for_seed, to_uint8
from protos.gan.v1 import sampler_pb2
from sampler_service.loading import LoadError, load_version
from tests.conftest import publish_tiny_generator, save_module_with_serve
from tests.conftest import wait_for_version
from trainer_service.models import build_dcgan_generator


def generate(stub, **fields) -> sampler_pb2.GenerateResponse:
    return stub.Generate(sampler_pb2.GenerateRequest(**fields), timeout=30)


def health_status(server) -> int:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_before_any_version_not_serving_and_unavailable(start_sampler):
    server, stub = start_sampler()
    assert health_status(server) == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as error:
        generate(stub, count=1)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "has not published" in error.value.details()


def test_serves_first_version_deterministically(start_sampler, tmp_path):
    server, stub = start_sampler()
    publish_tiny_generator(tmp_path, 10)
    wait_for_version(stub, 10)
    assert health_status(server) == health_pb2.HealthCheckResponse.SERVING
    first = generate(stub, count=4, seed=7)
    assert (first.model_version, first.seed, len(first.images)) == (10, 7, 4)
    assert (first.height, first.width, first.channels) == (28, 28, 1)
    assert decode_png(first.images[0]).shape == (28, 28, 1)
    assert list(generate(stub, count=4, seed=7).images) == list(first.images)  # byte-identical
    assert list(generate(stub, count=4, seed=8).images) != list(first.images)
    drawn = generate(stub, count=2)
    assert list(generate(stub, count=2, seed=drawn.seed).images) == list(drawn.images)
    raw = generate(stub, count=2, seed=7, format=sampler_pb2.IMAGE_FORMAT_RAW_UINT8)
    assert len(raw.images[0]) == 28 * 28
    np.testing.assert_array_equal(np.frombuffer(raw.images[0], np.uint8).reshape(28, 28, 1),
                                  decode_png(first.images[0]))


def test_bad_requests_get_clear_status_and_server_keeps_serving(start_sampler, tmp_path):
    server, stub = start_sampler(max_count=8)
    publish_tiny_generator(tmp_path, 3)
    wait_for_version(stub, 3)
    cases = [({"count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "at least 1"),
             ({"count": 9}, grpc.StatusCode.INVALID_ARGUMENT, "maximum of 8"),
             ({"count": 1, "format": 42}, grpc.StatusCode.INVALID_ARGUMENT, "unknown image format"),
             ({"count": 1, "model_version": -1}, grpc.StatusCode.INVALID_ARGUMENT, "positive"),
             ({"count": 1, "model_version": 99}, grpc.StatusCode.NOT_FOUND, "available: 3")]
    for fields, code, message in cases:
        with pytest.raises(grpc.RpcError) as error:
            generate(stub, **fields)
        assert error.value.code() == code and message in error.value.details(), fields
    assert generate(stub, count=1).model_version == 3
    assert health_status(server) == health_pb2.HealthCheckResponse.SERVING


def test_hot_swap_to_newer_version_without_failed_requests(start_sampler, tmp_path):
    _, stub = start_sampler()
    publish_tiny_generator(tmp_path, 1, seed=1)
    wait_for_version(stub, 1)
    before = generate(stub, count=3, seed=5)
    failures, versions, stop = [], set(), threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                versions.add(generate(stub, count=8).model_version)
            except grpc.RpcError as error:  # none expected
                failures.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        publish_tiny_generator(tmp_path, 2, seed=2)
        wait_for_version(stub, 2)
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert versions == {1, 2}
    # The old version stays reachable by pinning, with the same images as before the swap.
    pinned = generate(stub, count=3, seed=5, model_version=1)
    assert pinned.model_version == 1 and list(pinned.images) == list(before.images)
    info = stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=5).info
    assert list(info.available_versions) == [1, 2] and info.model_version == 2


def test_model_info_describes_the_served_version(start_sampler, tmp_path):
    _, stub = start_sampler()
    publish_tiny_generator(tmp_path, 6)
    wait_for_version(stub, 6)
    info = stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=5).info
    assert (info.training_step, info.latent_dim, info.height, info.channels) == (6, 100, 28, 1)
    assert info.architecture == "dcgan" and info.published_at.seconds > 0
    assert json.loads(info.metadata_json)["model_version"] == 6
    assert info.compute_precision == "float32"


def test_reflection_lists_the_services(start_sampler):
    server, _ = start_sampler()
    database = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    assert {"gan.v1.Sampler", "grpc.health.v1.Health"} <= set(database.get_services())


def test_serves_a_generator_saved_with_plain_keras(start_sampler, tmp_path):
    """A user's seed-tutorial generator, saved with model.save(), plus a hand-written metadata.json."""
    version_dir = tmp_path / "models" / "100"
    version_dir.mkdir(parents=True)
    build_dcgan_generator().save(version_dir / "generator.keras")
    (version_dir / "metadata.json").write_text(json.dumps(
        {"latent_dim": 100, "artifact_path": "generator.keras", "artifact_format": "keras"}))
    _, stub = start_sampler()
    wait_for_version(stub, 100)
    response = generate(stub, count=2, seed=1)
    assert response.height == 28 and len(response.images) == 2
    assert list(generate(stub, count=2, seed=1).images) == list(response.images)


def test_serves_a_generator_exported_with_keras_export(start_sampler, tmp_path):
    version_dir = tmp_path / "models" / "7"
    version_dir.mkdir(parents=True)
    keras.utils.set_random_seed(3)
    build_dcgan_generator().export(str(version_dir / "exported"), verbose=False)
    (version_dir / "metadata.json").write_text(json.dumps(
        {"latent_dim": 100, "artifact_path": "exported", "artifact_format": "saved_model"}))
    _, stub = start_sampler()
    wait_for_version(stub, 7)
    assert generate(stub, count=1).model_version == 7


def test_a_serve_function_returning_a_dict_is_served_and_one_with_two_outputs_refused(start_sampler, tmp_path):
    save_module_with_serve(tmp_path / "models" / "3", lambda images: {"images": images})
    two_outputs = tmp_path / "models" / "4"
    save_module_with_serve(two_outputs, lambda images: {"images": images, "logits": images[:, 0, 0, :]})
    keras.utils.set_random_seed(3)
    expected = build_dcgan_generator()  # the same seeded weights as the saved ones
    server, stub = start_sampler()
    wait_for_version(stub, 3)
    response = generate(stub, count=2, seed=1, format=sampler_pb2.IMAGE_FORMAT_RAW_UINT8)
    images = np.stack([np.frombuffer(image, np.uint8) for image in response.images]).reshape(2, 28, 28, 1)
    direct = to_uint8(expected(latents_for_seed(1, 2, 100), training=False).numpy())
    np.testing.assert_array_equal(images, direct)
    with pytest.raises(LoadError, match="several outputs \\(images, logits\\).*one tensor of images"):
        load_version(tmp_path, 4)
    assert generate(stub, count=1).model_version == 3


def test_broken_newer_version_is_skipped_and_the_good_one_kept(start_sampler, tmp_path):
    _, stub = start_sampler()
    publish_tiny_generator(tmp_path, 4)
    wait_for_version(stub, 4)
    broken = tmp_path / "models" / "5"
    broken.mkdir()
    (broken / "saved_model").mkdir()
    (broken / "saved_model" / "saved_model.pb").write_bytes(b"garbage")
    (broken / "metadata.json").write_text(json.dumps(
        {"latent_dim": 100, "artifact_path": "saved_model", "artifact_format": "saved_model"}))
    time.sleep(1.0)  # several polls
    assert generate(stub, count=1).model_version == 4
    with pytest.raises(grpc.RpcError) as error:
        generate(stub, count=1, model_version=5)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "cannot" in error.value.details()
