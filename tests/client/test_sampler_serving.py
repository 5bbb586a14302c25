"""The client's streaming, interpolation, version listing and scores against a real sampler."""

import json

import pytest
from PIL import Image

from client import GanServiceError, SamplerClient
from client.__main__ import main as cli
from gan_common import store as store_layout
from tests.conftest import publish_tiny_generator, wait_for_version


@pytest.fixture
def target(start_sampler, tmp_path) -> str:
    publish_tiny_generator(tmp_path, 4, seed=4)
    publish_tiny_generator(tmp_path, 9)
    server, stub = start_sampler(max_count=32)
    wait_for_version(stub, 9)
    store_layout.write_scores(tmp_path, 9, {"fid": 33.25})
    return f"127.0.0.1:{server.port}"


def test_stream_interpolate_versions_and_scores(target):
    with SamplerClient(target) as sampler:
        pieces = list(sampler.generate_stream(40, seed=3, image_format="raw", as_numpy=True))
        assert [p.first_index for p in pieces] == [0, 16, 32] and pieces[0].images[0].shape == (28, 28, 1)
        assert [a.tobytes() for a in pieces[0].images] == [
            a.tobytes() for a in sampler.generate(16, seed=3, image_format="raw", as_numpy=True).images]
        walk = sampler.interpolate(1, 2, 5, version=4)
        assert len(walk.images) == 5 and walk.model_version == 4 and isinstance(walk.images[0], Image.Image)
        assert walk.encoded[0] == sampler.generate(1, seed=1, version=4).encoded[0]
        assert sampler.info().scores == {"fid": 33.25}
        versions = sampler.versions()
        assert [(v.model_version, v.serving) for v in versions] == [(4, False), (9, True)]
        assert versions[1].state == "LOADED" and versions[1].scores == {"fid": 33.25}
        with pytest.raises(GanServiceError) as error:
            sampler.interpolate(1, 2, 33)
        assert "steps must be 2..32" in error.value.details


def test_cli_versions_interpolate_info_and_streamed_out_dir(target, tmp_path, capsys):
    assert cli(["versions", "--target", target]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["version", "state", "step", "published"]
    assert table[2].startswith("9") and "*serving" in table[2] and "fid=33.25" in table[2]
    assert cli(["info", "--target", target]) == 0
    assert json.loads(capsys.readouterr().out)["scores"] == {"fid": 33.25}
    assert cli(["interpolate", "--target", target, "--from", "1", "--to", "2", "--steps", "4",
                "--out", str(tmp_path / "walk.png")]) == 0
    assert "4 images from seed 1 to 2" in capsys.readouterr().out
    with Image.open(tmp_path / "walk.png") as grid:
        assert grid.size == (2 * 30 + 2, 2 * 30 + 2)
    # --out-dir streams: more images than one Generate may carry (--max-count 32 here)
    assert cli(["generate", "--target", target, "--count", "50", "--seed", "1",
                "--out-dir", str(tmp_path / "many")]) == 0
    assert len(list((tmp_path / "many").iterdir())) == 50
    assert "wrote 50 PNG files" in capsys.readouterr().out
