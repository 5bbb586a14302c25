"""Which versions are loaded, and the hot swap to a newer one (TensorFlow Serving's aspired versions).

A request takes a reference to a LoadedModel when it starts and keeps it to the end, so a swap never
disturbs it; the old model is freed once the last such request lets go.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from gan_common import store as store_layout
from sampler_service.loading import LoadedModel, LoadError, load_version

logger = logging.getLogger(__name__)


class NoModelYet(Exception):
    pass


class VersionNotFound(Exception):
    pass


class VersionUnloadable(Exception):
    pass


class ModelRegistry:
    def __init__(self, store: Path, max_loaded: int = 3, retry_failed_seconds: float = 30.0,
                 on_serving: Callable[[LoadedModel], None] | None = None) -> None:
        self.store = Path(store)
        self._max_loaded = max_loaded
        self._retry_failed_seconds = retry_failed_seconds
        self._on_serving = on_serving
        self._lock = threading.Lock()
        self._serving: LoadedModel | None = None
        self._loaded: collections.OrderedDict[int, LoadedModel] = collections.OrderedDict()  # LRU
        self._failed: dict[int, tuple[float, str]] = {}  # version -> (when, why)
        self._load_lock = threading.Lock()  # one load at a time: loads are CPU-heavy
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def serving(self) -> LoadedModel | None:
        return self._serving

    def available_versions(self) -> list[int]:
        return store_layout.list_versions(self.store)

    def _load(self, version: int) -> LoadedModel:
        with self._load_lock:
            with self._lock:
                if version in self._loaded:
                    return self._loaded[version]
            started = time.perf_counter()
            try:
                model = load_version(self.store, version)
            except LoadError as error:
                first_failure = version not in self._failed
                self._failed[version] = (time.monotonic(), str(error))
                if first_failure:
                    logger.warning("version %d cannot be served, skipping it: %s", version, error)
                raise
            self._failed.pop(version, None)
            logger.info("loaded version %d (%s, images %s) in %.1fs", version, model.metadata.architecture or
                        model.metadata.artifact_format, model.image_shape, time.perf_counter() - started)
            with self._lock:
                self._loaded[version] = model
                self._evict_locked()
            return model

    def _evict_locked(self) -> None:
        while len(self._loaded) > self._max_loaded:
            victim = next(v for v in self._loaded if self._serving is None or v != self._serving.version)
            del self._loaded[victim]  # requests holding it keep it alive until they finish

    def _may_retry(self, version: int) -> bool:
        failed = self._failed.get(version)
        return failed is None or time.monotonic() - failed[0] >= self._retry_failed_seconds

    def refresh(self) -> LoadedModel | None:
        """Serves the newest version that loads, if newer than the one served now."""
        current = self._serving.version if self._serving else 0
        for version in reversed(self.available_versions()):
            if version <= current:
                break
            if not self._may_retry(version):
                continue
            try:
                model = self._load(version)
            except LoadError:
                continue
            with self._lock:
                previous = self._serving
                self._serving = model
                self._loaded.move_to_end(version)
                self._evict_locked()
            logger.info("now serving version %d%s", version,
                        f" (was {previous.version})" if previous else "")
            if self._on_serving:
                self._on_serving(model)
            return model
        return None

    def resolve(self, version: int | None) -> LoadedModel:
        """The model for a request: the served one, or a pinned version (loaded on demand)."""
        serving = self._serving
        if version is None or (serving is not None and version == serving.version):
            if serving is None:
                raise NoModelYet()
            return serving
        with self._lock:
            if version in self._loaded:
                self._loaded.move_to_end(version)
                return self._loaded[version]
        if version not in self.available_versions():
            raise VersionNotFound()
        if not self._may_retry(version):
            raise VersionUnloadable(self._failed[version][1])
        try:
            return self._load(version)
        except LoadError as error:
            raise VersionUnloadable(str(error)) from None

    def start_polling(self, interval: float) -> None:
        def poll() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:  # the poller must outlive any surprise in the store
                    logger.exception("error while looking for new versions")

        self._poller = threading.Thread(target=poll, name="store-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller:
            self._poller.join(timeout=5)
