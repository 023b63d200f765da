"""The adapter cache: scripted loads and evictions give exactly the expected tier contents."""

from __future__ import annotations

import os

import pytest

from adapters import AdapterConfig, AdapterNotFoundError, random_adapter, save_adapter
from server.engine.cache import AdapterCache

FP = "sha256:" + "ab" * 16
D = 8


def write(folder, name, seed=1):
    config = AdapterConfig("input-tuning", D, 2, base_fingerprint=FP)
    return save_adapter(random_adapter(config, seed=seed), folder / f"{name}.safetensors")


@pytest.fixture
def cache(tmp_path):
    for i, name in enumerate("abcde"):
        write(tmp_path, name, seed=i)
    loads: list[tuple[int, int]] = []
    events: list[tuple[str, str]] = []
    c = AdapterCache(
        tmp_path,
        FP,
        D,
        device_slots=2,
        host_slots=3,
        pins=["e"],
        load_slot=lambda slot, w: loads.append((slot, int(w.config.prompt_length))),
        on_event=lambda tier, event: events.append((tier, event)),
    )
    c.loads, c.events = loads, events  # type: ignore[attr-defined]
    return c


def device_names(cache):
    return {slot: name for slot, (name, _) in cache.device_contents().items()}


def test_scripted_sequence(cache):
    e = cache.resolve("e")  # pinned
    a, b = cache.resolve("a"), cache.resolve("b")
    assert cache.host_contents() == ["e", "a", "b"]
    cache.acquire([e])
    cache.acquire([a])
    assert device_names(cache) == {1: "e", 2: "a"}
    cache.acquire([b])  # a is the only unpinned resident: evicted, e stays
    assert device_names(cache) == {1: "e", 2: "b"}
    assert a.device_slot is None and b.device_slot == 2
    c = cache.resolve("c")  # host tier full (3): LRU unpinned is 'a'
    assert cache.host_contents() == ["e", "b", "c"]
    assert cache.resolve("b") is b  # a hit moves b to the back
    cache.resolve("d")  # evicts c, the LRU unpinned
    assert cache.host_contents() == ["e", "b", "d"]
    cache.acquire([e, c])  # c left the host tier but the request still holds it: it loads and runs
    assert device_names(cache) == {1: "e", 2: "c"}
    assert [(t, ev) for t, ev in cache.events if ev == "eviction"] == [
        ("device", "eviction"),
        ("host", "eviction"),
        ("host", "eviction"),
        ("device", "eviction"),
    ]
    assert [slot for slot, _ in cache.loads] == [1, 2, 2, 2]


def test_batch_adapters_are_never_evicted_for_each_other(cache):
    a, b = cache.resolve("a"), cache.resolve("b")
    cache.acquire([a, b])
    assert set(device_names(cache).values()) == {"a", "b"}
    with pytest.raises(AssertionError, match="needs 3 slots"):
        cache.acquire([a, b, cache.resolve("c")])
    assert cache.max_unpinned_in_batch() == 1  # 2 slots, 1 pinned name


def test_a_replaced_file_is_a_new_version(cache, tmp_path):
    old = cache.resolve("a")
    cache.acquire([old])
    write(tmp_path, "a", seed=99)
    st = os.stat(tmp_path / "a.safetensors")
    os.utime(tmp_path / "a.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    new = cache.resolve("a")
    assert new is not old and new.version != old.version
    cache.acquire([old, new])  # an old batch and a new one: two slots, never mixed
    assert sorted(device_names(cache).values()) == ["a", "a"]
    assert old.device_slot != new.device_slot


def test_missing_adapter(cache):
    with pytest.raises(AdapterNotFoundError, match="'zzz' not found"):
        cache.resolve("zzz")
