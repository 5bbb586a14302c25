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
    (json.dumps({**VALID, "scores": {"fid": "low"}}), "scores must map names to numbers"),
])
def test_bad_metadata_is_refused_with_a_reason(body, message):
    with pytest.raises(store.MetadataError, match=message):
        store.ModelMetadata.from_json(body, version=1)


def test_write_scores_adds_to_metadata_atomically_and_keeps_the_rest(tmp_path):
    folder = make_version(tmp_path, "4", {**VALID, "dataset": "fashion_mnist", "note": "kept"})
    store.write_scores(tmp_path, 4, {"fid": 12.5}, extra={"judge_version": "abc"})
    updated = store.write_scores(tmp_path, 4, {"kid_mean": 0.01})
    assert updated.scores == {"fid": 12.5, "kid_mean": 0.01}
    again = store.read_metadata(tmp_path, 4)
    assert again == updated and again.dataset == "fashion_mnist"
    assert again.extra == {"note": "kept", "judge_version": "abc"}
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json"]  # no temporary left behind
