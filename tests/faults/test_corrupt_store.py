"""Corrupt and foreign folders in STORE/models: skipped with one log line, retried, never served."""

from __future__ import annotations

import json
import re
import shutil

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gan_common import store as store_layout
from protos.gan.v1 import sampler_pb2
from tests.conftest import publish_tiny_generator
from tests.faults.processes import sampler_stub, served_version, wait_until

pytestmark = pytest.mark.slow

VARIABLES = "saved_model/variables/variables.data-00000-of-00001"


def stage(store, version_name: str, damage) -> None:
    """A copy of version 1, damaged, then renamed into place in one step, as a publisher would."""
    models = store / "models"
    staging = models / f".tmp-damaged-{version_name}"
    shutil.copytree(models / "1", staging)
    damage(staging)
    staging.rename(models / version_name)


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def set_metadata(folder, **fields) -> None:
    body = json.loads((folder / store_layout.METADATA_FILE).read_text())
    (folder / store_layout.METADATA_FILE).write_text(json.dumps({**body, **fields}))


def export_non_image_generator(folder) -> None:
    """A model that maps a latent to 10 numbers: loads fine, but is no image generator."""
    import keras

    shutil.rmtree(folder / "saved_model")
    model = keras.Sequential([keras.Input((100,)), keras.layers.Dense(10)])
    model.export(str(folder / "saved_model"), verbose=False)
    set_metadata(folder, image_shape=None)


# version -> (damage, what its one log line must say)
DAMAGED = {
    2: (lambda f: (f / "saved_model" / "saved_model.pb").write_bytes(b"\x00garbage" * 64), "cannot load"),
    3: (lambda f: truncate(f / VARIABLES), "cannot load"),
    4: (lambda f: truncate(f / store_layout.METADATA_FILE), "not valid JSON"),
    5: (lambda f: set_metadata(f, image_shape=[32, 32, 1]), "metadata.json says"),
    6: (export_non_image_generator, "not an image"),
    7: (lambda f: shutil.rmtree(f / "saved_model"), "does not exist"),
}
FOREIGN = ["latest", "0", "backup-9", "9.old"]  # complete copies under names that are not versions


def test_damaged_and_foreign_folders_are_skipped_retried_and_never_replace_the_served_model(services, tmp_path):
    store = tmp_path / "store"
    publish_tiny_generator(store, 1, architecture="dense")
    sampler = services.sampler(store, "--retry-failed-seconds", "0.5")
    stub = sampler_stub(sampler.target)
    wait_until(lambda: served_version(stub) == 1, 120, "version 1 to be served", sampler)

    for version, (damage, _) in DAMAGED.items():
        stage(store, str(version), damage)
    for name in FOREIGN:
        stage(store, name, lambda f: None)
    (store / "models" / "8").mkdir()  # a folder being filled by hand: no metadata.json yet

    def skipped() -> dict[int, list[str]]:
        lines = re.findall(r"version (\d+) cannot be served, skipping it: (.*)", sampler.log_text())
        found: dict[int, list[str]] = {}
        for version, reason in lines:
            found.setdefault(int(version), []).append(reason)
        return found

    wait_until(lambda: set(skipped()) >= set(DAMAGED), 120, "every damaged version to be tried", sampler)
    for version in sorted(DAMAGED):
        with pytest.raises(grpc.RpcError) as error:
            stub.Generate(sampler_pb2.GenerateRequest(count=1, model_version=version), timeout=30)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION, version
        assert f"model version {version} cannot be loaded" in error.value.details()
    assert stub.Generate(sampler_pb2.GenerateRequest(count=2), timeout=30).model_version == 1

    # Repairing version 3 proves the damaged versions are retried (every 0.5 s here); the newer damaged
    # ones still fail, so 3 is now the newest good version.
    (store / "models" / "3" / VARIABLES).write_bytes((store / "models" / "1" / VARIABLES).read_bytes())
    wait_until(lambda: served_version(stub) == 3, 60, "the repaired version 3 to be served", sampler)

    reasons = skipped()
    assert set(reasons) == set(DAMAGED)  # nothing else (foreign names, folder 8) was ever tried
    for name in FOREIGN:
        lines = re.findall(rf"ignoring \S+/models/{re.escape(name)}: not a version", sampler.log_text())
        assert len(lines) == 1, (name, lines)
    for version, (_, says) in DAMAGED.items():
        assert len(reasons[version]) == 1, f"version {version} logged {len(reasons[version])} times"
        assert says in reasons[version][0], (version, reasons[version][0])
    info = stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=10).info
    assert list(info.available_versions) == [1, 2, 3, 4, 5, 6, 7]
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(sampler.target))
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert sampler.alive() and "Traceback" not in sampler.log_text()
