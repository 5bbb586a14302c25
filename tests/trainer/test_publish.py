import os

import numpy as np
import pytest

from gan_common import store as store_layout
from tests.conftest import publish_tiny_generator
from trainer_service import publish


def test_published_version_is_complete_and_leaves_no_temporaries(tmp_path):
    folder = publish_tiny_generator(tmp_path, 12)
    assert folder == tmp_path / "models" / "12"
    assert (folder / "saved_model" / "saved_model.pb").is_file()
    assert (folder / "samples.png").is_file()
    assert store_layout.read_metadata(tmp_path, 12).training_step == 12
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["12"]


def test_versions_are_immutable(tmp_path):
    folder = publish_tiny_generator(tmp_path, 5, seed=1)
    before = (folder / "metadata.json").read_text()
    publish_tiny_generator(tmp_path, 5, seed=2)
    assert (folder / "metadata.json").read_text() == before


def test_failed_publish_leaves_nothing_a_reader_would_load(tmp_path, monkeypatch):
    def broken_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError, match="No space"):
        publish_tiny_generator(tmp_path, 3)
    assert store_layout.list_versions(tmp_path) == []
    assert list((tmp_path / "models").iterdir()) == []


def test_stale_temporaries_from_a_crash_are_removed(tmp_path):
    stale = tmp_path / "models" / ".tmp-40-deadbeef"
    stale.mkdir(parents=True)
    (stale / "metadata.json").write_text("{}")
    assert store_layout.list_versions(tmp_path) == []  # readers never saw it
    publish.remove_stale_temporaries(tmp_path)
    assert not stale.exists()


def test_sample_grid_uses_fixed_latents():
    from trainer_service.models import build_dense_generator

    generator = build_dense_generator()
    first = publish.sample_grid(generator, 100, 3)
    np.testing.assert_array_equal(first, publish.sample_grid(generator, 100, 3))
    assert first.shape == (3 * 30 + 2, 3 * 30 + 2, 1)
