"""The real trainer (`python -m trainer_service`) with one pause that a test SIGKILLs it in.

    python -m tests.faults.paused_trainer {publish|checkpoint} N MARKER TRAINER_FLAGS...

publish: this process's N-th publish stops once the version is completely written and flushed to
STORE/models/.tmp-*, before the rename that publishes it.
checkpoint: its N-th checkpoint stops once the checkpoint's files are written, before the `checkpoint`
state file that names the newest complete checkpoint is updated.

Either way it writes MARKER (what it stopped on) and sleeps until killed, so the kill lands in that window
every time; polling for the window from outside would hit it only by luck. Test-only: nothing here
changes what the trainer does up to the pause.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _stop_here(marker: Path, where: str) -> None:
    marker.write_text(where)
    while True:
        time.sleep(60)


def pause_in_publish(nth: int, marker: Path) -> None:
    from gan_common import store

    flush = store.fsync_tree
    publishes = itertools.count(1)

    def flush_then_pause(root: Path) -> None:
        flush(root)
        if root.name.startswith(store.TEMP_PREFIX) and next(publishes) == nth:
            _stop_here(marker, str(root))

    store.fsync_tree = flush_then_pause


def pause_in_checkpoint(nth: int, marker: Path) -> None:
    import tensorflow as tf

    manager = tf.train.CheckpointManager
    save, record_state = manager.save, manager._record_state
    saves = itertools.count(1)

    def counting_save(self, *args, **kwargs):  # noqa: ANN001, ANN202
        self._pause_before_recording = next(saves) == nth
        return save(self, *args, **kwargs)

    def pause_then_record(self) -> None:  # noqa: ANN001
        if getattr(self, "_pause_before_recording", False):
            _stop_here(marker, str(self._latest_checkpoint))
        record_state(self)

    manager.save = counting_save
    manager._record_state = pause_then_record


def main(argv: list[str]) -> int:
    pause, nth, marker, *trainer_argv = argv
    {"publish": pause_in_publish, "checkpoint": pause_in_checkpoint}[pause](int(nth), Path(marker))
    from trainer_service.__main__ import main as trainer_main

    return trainer_main(trainer_argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
