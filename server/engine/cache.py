"""The adapter cache: adapter name -> device slot, through a host tier, from files on disk.

Tiers: disk (``<adapter_dir>/<name>.safetensors``) -> host (validated CPU tensors, LRU of
``host_slots``) -> device (``device_slots`` slots of the model's adapter bank, LRU).

Versions: an entry is one version of one file, identified by (mtime, size, inode) read
from the same open file descriptor as its bytes. A request holds the entry it resolved,
so a file replaced on disk (or by PUT) only affects requests resolved afterwards: queued
ones finish on the version they were given, and the device tier keys slots by entry,
never by name, so two versions never mix.

Threads: the host tier is used from the event loop's worker threads (resolve/put/delete)
under a lock; the device tier is changed only by the device thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from adapters import (
    AdapterError,
    AdapterNotFoundError,
    AdapterWeights,
    AdapterWriteError,
    adapter_path,
    check_compatible,
    from_bytes,
    list_adapter_names,
    read_config,
    validate_name,
)
from adapters.io import read_error, write_atomic, write_error

log = logging.getLogger(__name__)

Version = tuple[int, int, int]  # (mtime_ns, size, inode)


@dataclass(eq=False)
class AdapterEntry:
    """One loaded version of one adapter. Identity (not name) is what a device slot holds."""

    name: str
    version: Version
    weights: AdapterWeights
    pinned: bool = False
    device_slot: int | None = None  # device thread only

    @property
    def prompt_length(self) -> int:
        return self.weights.config.prompt_length


@dataclass
class CacheStats:
    """Counters the metrics layer reads (increments happen under the cache's lock or on the device thread)."""

    events: dict[tuple[str, str], int] = field(default_factory=dict)  # (tier, hit|miss|eviction) -> count

    def count(self, tier: str, event: str) -> None:
        key = (tier, event)
        self.events[key] = self.events.get(key, 0) + 1


def _version(st: os.stat_result) -> Version:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class AdapterCache:
    """Resolves adapter names to validated entries and places entries in device slots."""

    def __init__(
        self,
        adapter_dir: Path,
        fingerprint: str,
        d_model: int,
        device_slots: int,
        host_slots: int,
        load_slot: Callable[[int, AdapterWeights], None],
        pins: Iterable[str] = (),
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        assert host_slots >= device_slots, "host tier must be at least as large as the device tier"
        self.adapter_dir = Path(adapter_dir)
        self.fingerprint = fingerprint
        self.d_model = d_model
        self.device_slots = device_slots
        self.host_slots = host_slots
        self.pins = {validate_name(n) for n in pins}
        self._load_slot = load_slot
        self._on_event = on_event or (lambda tier, event: None)
        self._lock = threading.Lock()
        self._host: OrderedDict[str, AdapterEntry] = OrderedDict()  # name -> current entry, LRU order
        self._loading: dict[tuple[str, Version], Future] = {}
        # device tier: slot -> entry (slots 1..device_slots), LRU order of occupied slots
        self._slots: list[AdapterEntry | None] = [None] * (device_slots + 1)
        self._slot_lru: OrderedDict[int, None] = OrderedDict()

    # ------------------------------------------------------------------ host tier

    def path(self, name: str) -> Path:
        return adapter_path(self.adapter_dir, name)

    def _disk_error(self, error: OSError, name: str) -> AdapterError:
        """A client-facing error for a failed file operation on adapter ``name``: it names the adapter,
        never the folder (whose path goes to the server log)."""
        if isinstance(error, FileNotFoundError):
            return AdapterNotFoundError(f"adapter {name!r} not found: GET /adapters lists the available ones")
        log.warning("adapter %r: %s on %s", name, error, self.path(name))
        return read_error(error, f"adapter {name!r}")

    def cached(self, name: str) -> AdapterEntry | None:
        """The host entry for ``name`` if it is the file's current version (one stat, no read)."""
        try:
            version = _version(os.stat(self.path(name)))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._disk_error(e, name) from e
        with self._lock:
            entry = self._host.get(name)
            if entry is not None and entry.version == version:
                self._host.move_to_end(name)
                self._on_event("host", "hit")
                return entry
        return None

    def resolve(self, name: str) -> AdapterEntry:
        """The current version of ``name``, loading and validating it from disk on a miss (blocking).

        Raises AdapterNotFoundError, AdapterFormatError or IncompatibleAdapterError.
        """
        entry = self.cached(name)
        if entry is not None:
            return entry
        try:
            with self.path(name).open("rb") as f:
                version = _version(os.fstat(f.fileno()))
                key = (name, version)
                with self._lock:
                    pending = self._loading.get(key)
                    owner = pending is None
                    if owner:
                        pending = self._loading[key] = Future()
                if owner:
                    try:
                        data = f.read()
                    except BaseException as e:  # the waiters of this version must not wait forever
                        with self._lock:
                            self._loading.pop(key, None)
                        assert pending is not None
                        pending.set_exception(self._disk_error(e, name) if isinstance(e, OSError) else e)
                        raise
        except OSError as e:
            raise self._disk_error(e, name) from e
        assert pending is not None
        if not owner:
            return pending.result()
        try:
            weights = from_bytes(data, origin=f"adapter {name!r}")
            check_compatible(weights.config, self.fingerprint, self.d_model, origin=f"adapter {name!r}")
            entry = self._insert(AdapterEntry(name, version, weights, pinned=name in self.pins))
            self._on_event("host", "miss")
            pending.set_result(entry)
            return entry
        except BaseException as e:
            pending.set_exception(e)
            raise
        finally:
            with self._lock:
                self._loading.pop(key, None)

    def _insert(self, entry: AdapterEntry) -> AdapterEntry:
        with self._lock:
            old = self._host.get(entry.name)
            if old is not None and old.version == entry.version:
                self._host.move_to_end(entry.name)
                return old
            if old is not None:
                old.pinned = False  # a pin follows the name to its new version
            self._host[entry.name] = entry
            self._host.move_to_end(entry.name)
            while len(self._host) > self.host_slots:
                victim = next((n for n, e in self._host.items() if not e.pinned), None)
                if victim is None:
                    break
                del self._host[victim]  # requests still holding the entry keep its weights alive
                self._on_event("host", "eviction")
        return entry

    def put(self, name: str, data: bytes) -> AdapterEntry:
        """Validate uploaded bytes, store them atomically, and make them the current version. A failed
        write changes nothing (StorageFullError, AdapterWriteError)."""
        path = self.path(name)
        weights = from_bytes(data, origin=f"uploaded adapter {name!r}")
        check_compatible(weights.config, self.fingerprint, self.d_model, origin=f"uploaded adapter {name!r}")
        try:
            self.adapter_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
            version = _version(os.stat(path))
        except OSError as e:
            log.warning("upload of adapter %r to %s failed: %s", name, path, e)
            raise write_error(e, f"adapter {name!r}") from e
        except AdapterWriteError:
            log.warning("upload of adapter %r to %s failed", name, path, exc_info=True)
            raise
        return self._insert(AdapterEntry(name, version, weights, pinned=name in self.pins))

    def delete(self, name: str) -> None:
        """Remove the file and forget the host entry; batches already holding it finish normally."""
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError as e:
            raise AdapterNotFoundError(f"adapter {name!r} not found") from e
        except OSError as e:
            log.warning("delete of adapter %r (%s) failed: %s", name, path, e)
            raise write_error(e, f"adapter {name!r}") from e
        with self._lock:
            entry = self._host.pop(name, None)
            if entry is not None:
                entry.pinned = False

    def names_on_disk(self) -> list[str]:
        return list_adapter_names(self.adapter_dir)

    def describe(self, name: str) -> dict:
        """Facts about one adapter for the API: config from the header, size, and its tier."""
        path = self.path(name)
        config, metadata = read_config(path)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise self._disk_error(e, name) from e
        entry = self.cached(name)
        tier = "disk" if entry is None else "device" if self.on_device(entry) else "host"
        return {
            "name": name,
            "kind": config.kind,
            "base_model": config.base_model,
            "base_fingerprint": config.base_fingerprint,
            "compatible": config.base_fingerprint in ("", self.fingerprint)
            and config.d_model == self.d_model,
            "d_model": config.d_model,
            "prompt_length": config.prompt_length,
            "hidden_size": config.hidden_size,
            "size_bytes": size,
            "cached": tier,
            "pinned": name in self.pins,
            "metadata": metadata,
        }

    # ------------------------------------------------------------------ device tier (device thread)

    def on_device(self, entry: AdapterEntry) -> bool:
        slot = entry.device_slot
        return slot is not None and self._slots[slot] is entry

    def max_unpinned_in_batch(self) -> int:
        """Distinct unpinned adapters a batch may hold: pinned adapters keep their slots."""
        return self.device_slots - len(self.pins)

    def acquire(self, entries: Iterable[AdapterEntry]) -> None:
        """Make every entry of a batch device-resident, evicting only LRU slots the batch does not use."""
        needed = list(dict.fromkeys(entries))
        assert len(needed) <= self.device_slots, f"batch needs {len(needed)} slots of {self.device_slots}"
        in_batch = {id(e) for e in needed}
        for entry in needed:
            if self.on_device(entry):
                self._slot_lru.move_to_end(entry.device_slot)  # type: ignore[arg-type]
                self._on_event("device", "hit")
                continue
            slot = self._free_slot(in_batch)
            self._load_slot(slot, entry.weights)
            with self._lock:
                self._slots[slot] = entry
                entry.device_slot = slot
            self._slot_lru[slot] = None
            self._slot_lru.move_to_end(slot)
            self._on_event("device", "miss")

    def _free_slot(self, in_batch: set[int]) -> int:
        for slot in range(1, self.device_slots + 1):
            if self._slots[slot] is None:
                return slot
        for slot in self._slot_lru:  # least recently used first
            entry = self._slots[slot]
            assert entry is not None
            if id(entry) not in in_batch and not entry.pinned:
                with self._lock:
                    entry.device_slot = None
                    self._slots[slot] = None
                del self._slot_lru[slot]
                self._on_event("device", "eviction")
                return slot
        raise AssertionError("no evictable device slot: the batch builder let too many adapters in")

    def device_contents(self) -> dict[int, tuple[str, Version]]:
        """slot -> (name, version) of what the device tier holds (tests and diagnostics)."""
        with self._lock:
            return {s: (e.name, e.version) for s, e in enumerate(self._slots) if e is not None}

    def host_contents(self) -> list[str]:
        with self._lock:
            return list(self._host)
