import json
from pathlib import Path

import pytest

from gan_common import store


def make_version(root: Path, name: str, metadata: dict | None = None) -> Path:
    folder = root / "models" / name
    folder.mkdir(parents=True)
    if metadata is not None:
        (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


VALID = {"latent_dim": 100, "artifact_path": "saved_model", "artifact_format": "saved_model"}


def test_list_versions_ignores_temporaries_foreign_names_and_incomplete(tmp_path):
    for name in ("10", "200", "3"):
        make_version(tmp_path, name, VALID)
    make_version(tmp_path, ".tmp-400-abc", VALID)  # a publish in progress
    make_version(tmp_path, "latest", VALID)  # not a version number
    make_version(tmp_path, "0", VALID)  # versions start at 1
    make_version(tmp_path, "500")  # no metadata: not published
    assert store.list_versions(tmp_path) == [3, 10, 200]
    assert store.latest_version(tmp_path) == 200


def test_empty_or_missing_store_has_no_versions(tmp_path):
    assert store.list_versions(tmp_path / "nowhere") == []
    assert store.latest_version(tmp_path) is None


def test_metadata_round_trip_and_defaults(tmp_path):
    meta = store.ModelMetadata(latent_dim=64, artifact_path="g.keras", artifact_format="keras",
                               image_shape=(32, 32, 3), output_range=(0.0, 1.0), extra={"note": "x"})
    back = store.ModelMetadata.from_json(meta.to_json(), version=7)
    assert back.model_version == 7 and back.image_shape == (32, 32, 3) and back.output_range == (0.0, 1.0)
    assert back.extra == {"note": "x"}
    minimal = store.ModelMetadata.from_json(json.dumps(VALID), version=5)
    assert minimal.training_step == 5 and minimal.output_range == (-1.0, 1.0) and minimal.image_shape is None


@pytest.mark.parametrize("body, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"artifact_path": "a", "artifact_format": "keras"}), "latent_dim"),
    (json.dumps({**VALID, "artifact_format": "onnx"}), "artifact_format"),
    (json.dumps({**VALID, "latent_dim": -3}), "positive"),
    (json.dumps({**VALID, "artifact_path": "../../etc/passwd"}), "inside the version folder"),
])
def test_bad_metadata_is_refused_with_a_reason(body, message):
    with pytest.raises(store.MetadataError, match=message):
        store.ModelMetadata.from_json(body, version=1)
