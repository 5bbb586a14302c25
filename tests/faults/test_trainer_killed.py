"""SIGKILL of the trainer mid-checkpoint and mid-publish while a sampler serves the same store."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan_common import store as store_layout
from protos.gan.v1 import sampler_pb2
from tests.faults.processes import (loaded_versions, newest_complete_checkpoint, sampler_stub, served_version,
                                   wait_for_log, wait_until)

pytestmark = pytest.mark.slow

CHECKPOINT_EVERY = 5
PUBLISH_EVERY = 10
RUN_FLAGS = ["--steps", "1000", "--checkpoint-every", str(CHECKPOINT_EVERY), "--publish-every", str(PUBLISH_EVERY)]


def resumed_step(trainer) -> int:
    return int(wait_for_log(trainer, r"resumed from \S+ at step (\d+)", 120).group(1))


def test_killed_mid_checkpoint_and_mid_publish_loses_at_most_one_interval_and_serving_goes_on(
        services, tmp_path):
    store = tmp_path / "store"
    sampler = services.sampler(store)
    stub = sampler_stub(sampler.target)

    # 1. Killed while writing its third checkpoint (step 15): the files are on disk, not yet recorded.
    marker = tmp_path / "paused-in-checkpoint"
    trainer = services.paused_trainer("checkpoint", 3, marker, store, *RUN_FLAGS)
    wait_until(marker.exists, 300, "the trainer to write its third checkpoint", trainer)
    trainer.kill()
    assert marker.read_text().endswith("ckpt-15")
    killed_at = 15
    assert newest_complete_checkpoint(store) == 10
    partial = store / "checkpoints" / "ckpt-15.data-00000-of-00001"
    partial.write_bytes(partial.read_bytes()[: partial.stat().st_size // 2])  # and torn, as a crash can leave it
    wait_until(lambda: served_version(stub) == 10, 60, "the sampler to serve version 10", sampler)

    # 2. Restarted, it resumes from the last complete checkpoint; killed again mid-publish of step 20.
    marker = tmp_path / "paused-in-publish"
    trainer = services.paused_trainer("publish", 1, marker, store, *RUN_FLAGS)
    resumed = resumed_step(trainer)
    assert resumed == newest_complete_checkpoint(store) == 10
    assert 0 <= killed_at - resumed <= CHECKPOINT_EVERY
    wait_until(marker.exists, 300, "the trainer to write version 20 aside", trainer)
    unfinished = Path(marker.read_text())
    assert unfinished.parent == store / "models" and unfinished.name.startswith(".tmp-20-")
    assert (unfinished / store_layout.METADATA_FILE).is_file()  # complete, only the rename is missing
    assert served_version(stub) == 10
    trainer.kill()
    killed_at = 20
    assert unfinished.is_dir() and store_layout.list_versions(store) == [10]
    for _ in range(10):  # a couple of seconds of polls: the sampler keeps version 10 and ignores the rest
        response = stub.Generate(sampler_pb2.GenerateRequest(count=2, seed=1), timeout=30)
        assert response.model_version == 10 and len(response.images) == 2
    info = stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=10).info
    assert list(info.available_versions) == [10]

    # 3. A plain restart resumes at step 20 (checkpointed before publishing), clears the unfinished
    #    publish, and the next version reaches the sampler.
    trainer = services.trainer(store, *RUN_FLAGS)
    resumed = resumed_step(trainer)
    assert resumed == newest_complete_checkpoint(store) == 20
    assert 0 <= killed_at - resumed <= CHECKPOINT_EVERY
    wait_until(lambda: served_version(stub) == 30, 300, "the sampler to serve version 30", trainer)
    assert not unfinished.exists() and "removing unfinished publish" in trainer.log_text()
    assert loaded_versions(sampler) == [10, 30]  # never a partial version
    assert "cannot be served" not in sampler.log_text()
