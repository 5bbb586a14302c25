"""The store layout: the contract between the trainer (writer) and the sampler (reader).

    STORE/models/<version>/metadata.json    a published generator; <version> is an integer (the
    STORE/models/<version>/...              training step), the folder appears by an atomic rename
    STORE/models/.tmp-*                     publishing in progress; readers ignore it
    STORE/checkpoints/                      the trainer's private training state
    STORE/logs/                             TensorBoard summaries

As in TensorFlow Serving, anything in models/ whose name is not an integer is ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

MODELS_DIR = "models"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
METADATA_FILE = "metadata.json"
SAMPLE_GRID_FILE = "samples.png"
TEMP_PREFIX = ".tmp-"
METADATA_SCHEMA = 1


class MetadataError(ValueError):
    """A version folder whose metadata.json is missing or does not describe a servable model."""


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """What a published version says about itself: enough to load and serve it without the trainer."""

    latent_dim: int
    artifact_path: str  # relative to the version folder
    artifact_format: str  # "saved_model" or "keras"
    model_version: int = 0
    training_step: int = 0
    image_shape: tuple[int, int, int] | None = None  # (height, width, channels); None: found at load
    output_range: tuple[float, float] = (-1.0, 1.0)
    dataset: str = ""
    architecture: str = ""
    published_at: str = ""  # ISO 8601, UTC
    num_classes: int = 0  # > 0: a class-conditional generator, called with [latents, int32 labels]
    class_names: tuple[str, ...] = ()
    # Quality scores from the offline judge (fid, kid, precision, ...); filled in after publishing by
    # write_scores, so a freshly published version may have none yet.
    scores: dict[str, float] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        body = dataclasses.asdict(self)
        body["schema"] = METADATA_SCHEMA
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, version: int) -> "ModelMetadata":
        try:
            body = json.loads(text)
        except json.JSONDecodeError as error:
            raise MetadataError(f"metadata.json is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise MetadataError("metadata.json must hold a JSON object")
        body.pop("schema", None)
        known = {f.name for f in dataclasses.fields(cls)}
        for required in ("latent_dim", "artifact_path", "artifact_format"):
            if required not in body:
                raise MetadataError(f"metadata.json lacks the field {required!r}")
        if body["artifact_format"] not in ("saved_model", "keras"):
            raise MetadataError(f"artifact_format must be 'saved_model' or 'keras', not {body['artifact_format']!r}")
        if not isinstance(body["latent_dim"], int) or body["latent_dim"] <= 0:
            raise MetadataError(f"latent_dim must be a positive integer, not {body['latent_dim']!r}")
        artifact = Path(body["artifact_path"])
        if artifact.is_absolute() or ".." in artifact.parts:
            raise MetadataError("artifact_path must be a path inside the version folder")
        extra = {k: v for k, v in body.items() if k not in known}
        values = {k: v for k, v in body.items() if k in known}
        values["extra"] = {**values.get("extra", {}), **extra}
        if values.get("image_shape") is not None:
            values["image_shape"] = tuple(int(x) for x in values["image_shape"])
        values["output_range"] = tuple(float(x) for x in values.get("output_range", (-1.0, 1.0)))
        values["class_names"] = tuple(str(x) for x in values.get("class_names", ()))
        if not isinstance(values.get("num_classes", 0), int) or values.get("num_classes", 0) < 0:
            raise MetadataError(f"num_classes must be a non-negative integer, not {values['num_classes']!r}")
        if values.get("num_classes") and values["class_names"] and len(values["class_names"]) != values["num_classes"]:
            raise MetadataError(f"class_names has {len(values['class_names'])} names for {values['num_classes']} classes")
        scores = values.get("scores", {})
        if not isinstance(scores, dict) or not all(isinstance(v, (int, float)) for v in scores.values()):
            raise MetadataError("scores must map names to numbers")
        values["scores"] = {str(k): float(v) for k, v in scores.items()}
        values["model_version"] = version
        values.setdefault("training_step", version)
        return cls(**values)


def models_dir(store: Path | str) -> Path:
    return Path(store) / MODELS_DIR


def version_dir(store: Path | str, version: int) -> Path:
    return models_dir(store) / str(version)


def parse_version(name: str) -> int | None:
    """The version a folder name stands for, or None when the name is not a positive integer."""
    return int(name) if name.isdigit() and int(name) > 0 else None


def list_versions(store: Path | str) -> list[int]:
    """Published versions, oldest first: integer-named folders that hold a metadata file."""
    root = models_dir(store)
    if not root.is_dir():
        return []
    versions = []
    for entry in root.iterdir():
        version = parse_version(entry.name)
        if version is not None and (entry / METADATA_FILE).is_file():
            versions.append(version)
    return sorted(versions)


def latest_version(store: Path | str) -> int | None:
    versions = list_versions(store)
    return versions[-1] if versions else None


def read_metadata(store: Path | str, version: int) -> ModelMetadata:
    path = version_dir(store, version) / METADATA_FILE
    try:
        text = path.read_text()
    except OSError as error:
        raise MetadataError(f"cannot read {path}: {error.strerror}") from None
    return ModelMetadata.from_json(text, version)


def write_scores(store: Path | str, version: int, scores: dict[str, float],
                 extra: dict[str, Any] | None = None) -> ModelMetadata:
    """Adds scores (and extra notes) to a published version's metadata.json, atomically: temp file,
    fsync, rename, so a reader sees the old or the new file, never half of one."""
    metadata = read_metadata(store, version)
    updated = dataclasses.replace(metadata, scores={**metadata.scores, **{k: float(v) for k, v in scores.items()}},
                                  extra={**metadata.extra, **(extra or {})})
    folder = version_dir(store, version)
    temporary = folder / f"{TEMP_PREFIX}{METADATA_FILE}"
    with open(temporary, "w") as handle:
        handle.write(updated.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, folder / METADATA_FILE)
    fsync_dir(folder)
    return updated


def fsync_tree(root: Path) -> None:
    """Flushes every file and folder under root to disk, so a rename publishes complete data."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
