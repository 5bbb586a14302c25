"""Which versions are loaded, and the hot swap to a newer one (TensorFlow Serving's version policy).

The newest `max_loaded` versions are loaded ahead of requests; a request may pin an older published
version, which is then loaded on demand and takes the place of the least recently used one. A request
holds a lease on its model from start to end: a swap never disturbs it, and a version evicted while
leased stays UNLOADING, still answering those requests, until the last one lets go.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from gan_common import store as store_layout
from sampler_service.loading import LoadedModel, LoadError, load_version

logger = logging.getLogger(__name__)

ON_DISK, LOADED, UNLOADING, FAILED = "ON_DISK", "LOADED", "UNLOADING", "FAILED"


class NoModelYet(Exception):
    pass


class VersionNotFound(Exception):
    pass


class VersionUnloadable(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class VersionState:
    version: int
    state: str  # ON_DISK, LOADED, UNLOADING or FAILED
    serving: bool
    in_flight: int
    error: str
    metadata: store_layout.ModelMetadata | None  # read from disk now: scores written after publishing show


class ModelRegistry:
    def __init__(self, store: Path, max_loaded: int = 3, retry_failed_seconds: float = 30.0,
                 on_serving: Callable[[LoadedModel], None] | None = None, max_batch_size: int = 16) -> None:
        self.store = Path(store)
        self._max_batch_size = max_batch_size
        self._max_loaded = max_loaded
        self._retry_failed_seconds = retry_failed_seconds
        self._on_serving = on_serving
        self._lock = threading.Lock()
        self._serving: LoadedModel | None = None
        self._loaded: collections.OrderedDict[int, LoadedModel] = collections.OrderedDict()  # LRU
        self._unloading: dict[int, LoadedModel] = {}  # evicted, still leased by in-flight requests
        self._in_flight: collections.Counter[int] = collections.Counter()
        self._failed: dict[int, tuple[float, str]] = {}  # version -> (when, why)
        self._seen_entries: set[str] = set()  # names in models/ already judged, for one log line each
        self._load_lock = threading.Lock()  # one load at a time: loads are CPU-heavy
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def serving(self) -> LoadedModel | None:
        return self._serving

    def loaded_count(self) -> int:
        with self._lock:
            return len(self._loaded) + len(self._unloading)

    def available_versions(self) -> list[int]:
        return store_layout.list_versions(self.store)

    def _load(self, version: int, lease: bool = False) -> LoadedModel:
        """Loads a version (once, however many ask); `lease` takes a request's lease before anything
        can evict it."""
        with self._load_lock:
            with self._lock:
                if version in self._loaded:
                    self._in_flight[version] += lease
                    return self._loaded[version]
            started = time.perf_counter()
            try:
                model = load_version(self.store, version, self._max_batch_size)
            except LoadError as error:
                first_failure = version not in self._failed
                self._failed[version] = (time.monotonic(), str(error))
                if first_failure:
                    logger.warning("version %d cannot be served, skipping it: %s", version, error)
                raise
            self._failed.pop(version, None)
            logger.info("loaded version %d (%s, images %s, forward passes of %s) in %.1fs", version,
                        model.metadata.architecture or model.metadata.artifact_format, model.image_shape,
                        "/".join(map(str, model.pass_shapes)), time.perf_counter() - started)
            with self._lock:
                self._loaded[version] = model
                self._in_flight[version] += lease
                self._evict_locked(keep=None if lease else version)  # a leased one may go to UNLOADING
            return model

    def _evict_locked(self, keep: int | None = None) -> None:
        """Unloads least recently used versions beyond max_loaded; never the served one or `keep`."""
        spared = {keep, self._serving.version if self._serving else None}
        while len(self._loaded) > self._max_loaded:
            victim = next((v for v in self._loaded if v not in spared), None)
            if victim is None:
                return
            model = self._loaded.pop(victim)
            if self._in_flight[victim]:
                self._unloading[victim] = model
                logger.info("unloading version %d once its %d in-flight requests finish",
                            victim, self._in_flight[victim])
            else:
                logger.info("unloaded version %d", victim)

    def _may_retry(self, version: int) -> bool:
        failed = self._failed.get(version)
        return failed is None or time.monotonic() - failed[0] >= self._retry_failed_seconds

    def refresh(self, preload: bool = True) -> LoadedModel | None:
        """Serves the newest version that loads, if newer than the one served now; with `preload`, also
        loads the next newest ones while fewer than max_loaded are in memory. Returns the new model."""
        self._report_foreign_entries()
        versions = self.available_versions()
        swapped = self._serve_newest(versions)
        if preload:
            for version in reversed(versions[-self._max_loaded:]):
                with self._lock:
                    if len(self._loaded) >= self._max_loaded:
                        break
                    known = version in self._loaded or version in self._unloading
                if not known and self._may_retry(version):
                    with contextlib.suppress(LoadError):
                        self._load(version)
        return swapped

    def _report_foreign_entries(self) -> None:
        """One log line for each entry of models/ that is not a version, so a misnamed copy is noticed."""
        root = store_layout.models_dir(self.store)
        names = {entry.name for entry in root.iterdir()} if root.is_dir() else set()
        for name in sorted(names - self._seen_entries):
            if store_layout.parse_version(name) is None and not name.startswith(store_layout.TEMP_PREFIX):
                logger.warning("ignoring %s: not a version (versions are folders named by a positive integer)",
                               root / name)
        self._seen_entries |= names

    def _serve_newest(self, versions: list[int]) -> LoadedModel | None:
        current = self._serving.version if self._serving else 0
        for version in reversed(versions):
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
                self._loaded[version] = model  # back in, should a pin have evicted it meanwhile
                self._loaded.move_to_end(version)
                self._evict_locked()
            logger.info("now serving version %d%s", version,
                        f" (was {previous.version})" if previous else "")
            if self._on_serving:
                self._on_serving(model)
            return model
        return None

    def _lookup_locked(self, version: int | None) -> LoadedModel | None:
        if version is None or (self._serving is not None and version == self._serving.version):
            if self._serving is None:
                raise NoModelYet()
            return self._serving
        if version in self._unloading:  # pinned again before its last request finished: no reload
            return self._unloading[version]
        if version in self._loaded:
            self._loaded.move_to_end(version)
            return self._loaded[version]
        return None

    def acquire_loaded(self, version: int | None) -> LoadedModel | None:
        """acquire() when the model is in memory already, so it never waits for a load (an asyncio
        handler may call it on the event loop); None when it would have to load it."""
        with self._lock:
            model = self._lookup_locked(version)
            if model is not None:
                self._in_flight[model.version] += 1
            return model

    def acquire(self, version: int | None) -> LoadedModel:
        """Leases the model for a request (the served one, or a pinned version, loaded on demand);
        every acquire needs a release."""
        model = self.acquire_loaded(version)
        if model is not None:
            return model
        assert version is not None
        if version not in self.available_versions():
            raise VersionNotFound()
        if not self._may_retry(version):
            raise VersionUnloadable(self._failed[version][1])
        try:
            return self._load(version, lease=True)
        except LoadError as error:
            raise VersionUnloadable(str(error)) from None

    def release(self, model: LoadedModel) -> None:
        with self._lock:
            self._in_flight[model.version] -= 1
            if not self._in_flight[model.version]:
                del self._in_flight[model.version]
                if self._unloading.get(model.version) is model:
                    del self._unloading[model.version]
                    logger.info("unloaded version %d: its last in-flight request finished", model.version)

    def version_states(self) -> list[VersionState]:
        """Every published version, oldest first, with its state and its metadata as on disk now."""
        states = []
        for version in self.available_versions():
            try:
                metadata, read_error = store_layout.read_metadata(self.store, version), ""
            except store_layout.MetadataError as error:
                metadata, read_error = None, str(error)
            with self._lock:
                if version in self._loaded:
                    state = LOADED
                elif version in self._unloading:
                    state = UNLOADING
                elif version in self._failed:
                    state = FAILED
                else:
                    state = ON_DISK
                serving = self._serving is not None and self._serving.version == version
                in_flight = self._in_flight[version]
                error = self._failed[version][1] if version in self._failed else read_error
            states.append(VersionState(version, state, serving, in_flight, error, metadata))
        return states

    def start_polling(self, interval: float) -> None:
        def poll() -> None:
            while not self._stop.wait(interval):
                try:
                    if self.refresh():
                        # an unloaded SavedModel is a web of reference cycles that only a full collection
                        # frees; left to the collector's schedule, RSS climbed 13 MiB a swap for 15 swaps.
                        # Cheap in the sampler process, which froze its imports (see __main__).
                        gc.collect()
                except Exception:  # the poller must outlive any surprise in the store
                    logger.exception("error while looking for new versions")

        self._poller = threading.Thread(target=poll, name="store-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller:
            self._poller.join(timeout=5)
