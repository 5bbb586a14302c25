"""--precision bfloat16: refused clearly where the CPU cannot run it fast, and where it can, a real server
computes in bfloat16 and keeps batching's contract (an image is the same alone or batched)."""

import concurrent.futures
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_common.images import latents_for_seed
from protos.gan.v1 import sampler_pb2
from sampler_service import precision
from sampler_service.batching import run_padded
from sampler_service.loading import load_version
from tests.conftest import REPO_ROOT, publish_tiny_generator, save_module_with_serve, wait_for_version
from trainer_service.models import build_dcgan_generator

HAS_BFLOAT16 = precision.bfloat16_supported()


def raw_images(response) -> np.ndarray:
    return np.stack([np.frombuffer(image, np.uint8) for image in response.images])


def passes(server) -> float:
    return server.metrics.registry.get_sample_value("gan_sampler_batch_requests_count") or 0.0


def generate(stub, seed: int, count: int) -> np.ndarray:
    return raw_images(stub.Generate(sampler_pb2.GenerateRequest(
        count=count, seed=seed, format=sampler_pb2.IMAGE_FORMAT_RAW_UINT8), timeout=60))


def test_bfloat16_is_refused_without_bfloat16_instructions_and_accepted_with_them():
    with pytest.raises(precision.PrecisionError, match="avx512_bf16 or amx_bf16.*--precision float32"):
        precision.check_supported("bfloat16", flags={"avx2", "avx512f"})
    precision.check_supported("bfloat16", flags={"avx512f", "amx_bf16", "amx_tile"})
    precision.check_supported("float32", flags=set())
    with pytest.raises(precision.PrecisionError, match="unknown precision"):
        precision.check_supported("float16", flags=set())


def test_an_unknown_precision_is_a_usage_error_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sampler_service", "--store", str(tmp_path), "--precision",
                             "float16"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "float32" in result.stderr and "bfloat16" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not HAS_BFLOAT16, reason="this CPU has neither avx512_bf16 nor amx_bf16")
def test_bfloat16_server_is_deterministic_batches_exactly_and_differs_only_slightly(start_sampler, tmp_path):
    publish_tiny_generator(tmp_path, 1)
    _, float32_stub = start_sampler(max_batch_size=64)
    wait_for_version(float32_stub, 1)
    reference = generate(float32_stub, 5, 64)  # before the bfloat16 server switches the whole process

    server, stub = start_sampler(precision="bfloat16", max_batch_size=64, max_queue_delay_ms=50)
    wait_for_version(stub, 1)
    assert stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=5).info.compute_precision == "bfloat16"
    alone = generate(stub, 5, 64)
    np.testing.assert_array_equal(generate(stub, 5, 64), alone)
    # Concurrent requests share forward passes of up to 64 rows; each still gets its images from alone.
    seeds = range(10, 18)
    singles = {seed: generate(stub, seed, 8) for seed in seeds}
    passes_before = passes(server)
    with concurrent.futures.ThreadPoolExecutor(len(seeds)) as pool:
        batched = dict(zip(seeds, pool.map(lambda seed: generate(stub, seed, 8), seeds)))
    assert passes(server) - passes_before < len(seeds), "the concurrent requests were not batched"
    for seed in seeds:
        np.testing.assert_array_equal(batched[seed], singles[seed])
    # bfloat16 really ran, and moved pixels by 8 levels at most, by less than half a level on average.
    difference = np.abs(alone.astype(int) - reference.astype(int))
    assert difference.max() >= 1 and difference.max() <= 8 and difference.mean() < 0.5


def write_artifacts(store) -> dict[int, str]:
    """One version of each artifact kind the sampler loads: Keras export (the trainer's, plain and
    class-conditional), a .keras file, a SavedModel with only a serving_default signature, and one whose
    serve function returns a dict."""
    publish_tiny_generator(store, 1, "dcgan-k4")
    publish_tiny_generator(store, 2, "dcgan", class_names=("a", "b", "c"))
    keras.utils.set_random_seed(3)
    (store / "models" / "3").mkdir(parents=True)
    build_dcgan_generator().save(store / "models" / "3" / "generator.keras")
    (store / "models" / "3" / "metadata.json").write_text(json.dumps(
        {"latent_dim": 100, "artifact_path": "generator.keras", "artifact_format": "keras"}))
    generator = build_dcgan_generator()
    module = tf.Module()
    module.generator = generator
    module.call = tf.function(lambda z: {"images": generator(z, training=False)},
                               input_signature=[tf.TensorSpec([None, 100], tf.float32, name="z")])
    tf.saved_model.save(module, str(store / "models" / "4" / "sm"),
                        signatures={"serving_default": module.call.get_concrete_function()})
    (store / "models" / "4" / "metadata.json").write_text(json.dumps(
        {"latent_dim": 100, "artifact_path": "sm", "artifact_format": "saved_model"}))
    save_module_with_serve(store / "models" / "5", lambda images: {"images": images})
    return {1: "keras export", 2: "conditional keras export", 3: ".keras file", 4: "serving_default signature",
            5: "serve function returning a dict"}


@pytest.mark.skipif(not HAS_BFLOAT16, reason="this CPU has neither avx512_bf16 nor amx_bf16")
def test_bfloat16_loads_every_artifact_kind_frozen_deterministic_and_close_to_float32(tmp_path):
    kinds = write_artifacts(tmp_path)
    latents = latents_for_seed(9, 40, 100)
    labels = {2: np.arange(40, dtype=np.int32) % 3}

    def images(model, rows: int = 40, shapes=None) -> np.ndarray:  # 40: passes of 32 and 16 (padded)
        version_labels = labels.get(model.version)
        return run_padded(model, latents[:rows], None if version_labels is None else version_labels[:rows],
                          shapes or model.pass_shapes)

    reference = {version: images(load_version(tmp_path, version, 32)) for version in kinds}
    precision.apply("bfloat16")
    for version, kind in kinds.items():
        model = load_version(tmp_path, version, 32)
        frozen = model.forward.keep_alive  # type: ignore[attr-defined]
        assert not frozen.variables, f"{kind}: the bfloat16 forward still reads variables"
        first = images(model)
        # The server calls the frozen function flat (faster); a plain call computes the same floats.
        z, row_labels = tf.constant(latents[:16]), labels[version][:16] if version in labels else None
        plain = frozen(z) if row_labels is None else frozen(z, tf.constant(row_labels))
        np.testing.assert_array_equal(model.forward(latents[:16], row_labels), np.asarray(plain[0]), err_msg=kind)
        # Same version, same images: after a reload, and in a pass of 16 alone as beside other rows.
        np.testing.assert_array_equal(images(load_version(tmp_path, version, 32)), first, err_msg=kind)
        np.testing.assert_array_equal(images(model, 5, 16), first[:5], err_msg=kind)
        difference = np.abs(first.astype(int) - reference[version].astype(int))
        assert 1 <= difference.max() <= 8 and difference.mean() < 0.5, f"{kind}: {difference.max()}"
    # Frozen at every pass size, the small passes of a server limited to 8 rows included.
    assert not load_version(tmp_path, 1, 8).forward.keep_alive.variables  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def float32_afterwards():
    """The precision is process-wide: later tests in this process must compute in float32 again."""
    yield
    precision.apply("float32")
