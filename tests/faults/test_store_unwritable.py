"""The store's models folder is full, then read-only, when the trainer publishes: one clear error line,
the checkpoint intact, and a later run resumes and publishes.

Both conditions are real file systems, not simulated errors: a 1 MiB tmpfs (a version needs several MiB)
and a read-only bind mount. Mounting needs root, which CI and the development machines have; chmod would
not do, as root writes through permission bits.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from gan_common import store as store_layout
from tests.faults.processes import newest_complete_checkpoint, wait_until

pytestmark = pytest.mark.slow

RUN_FLAGS = ["--steps", "10", "--checkpoint-every", "5", "--publish-every", "10"]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def mounts(tmp_path):
    """mount(args..., target) for this test; everything mounted is unmounted at the end."""
    probe = tmp_path / f"probe-{uuid.uuid4().hex[:6]}"
    probe.mkdir()
    tried = run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)) if os.geteuid() == 0 else None
    if tried is None or tried.returncode != 0:
        pytest.skip("needs root and permission to mount a tmpfs (a full disk) and a read-only bind mount: "
                    f"{tried.stderr.strip() if tried else 'not root'}")
    mounted = [probe]

    def mount(*args: str) -> None:
        result = run("mount", *args)
        assert result.returncode == 0, result.stderr
        mounted.append(args[-1])

    yield mount
    for target in reversed(mounted):
        run("umount", "-l", str(target))


def unmount(target) -> None:
    result = run("umount", str(target))
    assert result.returncode == 0, result.stderr


def test_full_then_read_only_store_is_one_clear_error_and_training_state_survives(services, mounts, tmp_path):
    store = tmp_path / "store"
    models = store / store_layout.MODELS_DIR
    models.mkdir(parents=True)

    # 1. The disk is full: a 1 MiB file system where a version needs several.
    mounts("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(models))
    trainer = services.trainer(store, *RUN_FLAGS)
    assert wait_until(lambda: trainer.process.poll() is not None, 300, "the trainer to stop") and \
        trainer.process.returncode == 1, trainer.log_text()[-3000:]
    log = trainer.log_text()
    assert f"error: cannot publish version 10 to {models}: No space left on device. The training state is " \
           "checkpointed" in log
    assert "Traceback" not in log
    assert newest_complete_checkpoint(store) == 10
    assert list(models.iterdir()) == []  # the half-written version was removed
    unmount(models)

    # 2. The store's models folder is read-only: the resumed run fails the same clear way.
    mounts("--bind", str(models), str(models))
    mounts("-o", "remount,bind,ro", str(models), str(models))
    trainer = services.trainer(store, *RUN_FLAGS)
    assert wait_until(lambda: trainer.process.poll() is not None, 300, "the trainer to stop") and \
        trainer.process.returncode == 1, trainer.log_text()[-3000:]
    log = trainer.log_text()
    assert "resumed from" in log and "at step 10" in log
    assert f"error: cannot publish version 10 to {models}: Read-only file system." in log
    assert "Traceback" not in log
    assert newest_complete_checkpoint(store) == 10
    unmount(models)

    # 3. Writable again: the same command resumes at step 10 and publishes it.
    trainer = services.trainer(store, *RUN_FLAGS)
    assert trainer.process.wait(timeout=300) == 0, trainer.log_text()[-3000:]
    assert "at step 10" in trainer.log_text()
    assert store_layout.list_versions(store) == [10]
