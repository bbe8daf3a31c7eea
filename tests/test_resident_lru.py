"""``ResidentAdapters``: the LRU of adapters a worker holds beside its base.

Pure bookkeeping, so tested here with plain values: what is evicted, when,
and that an adapter in use is never evicted (the real HF worker's eviction
under load is in ``test_resident_adapters``).
"""

from __future__ import annotations

import pytest
from swayworker.errors import BadSpec
from swayworker.resident import DEFAULT_MAX_RESIDENT, ResidentAdapters, resident_limit


def lru(limit: int) -> tuple[ResidentAdapters[str], list[str], list[str]]:
    loaded: list[str] = []
    unloaded: list[str] = []

    def load(path: str) -> str:
        loaded.append(path)
        return f"adapter at {path}"

    return ResidentAdapters(limit, load, lambda path, _: unloaded.append(path)), loaded, unloaded


def test_the_least_recently_used_idle_adapter_goes_first() -> None:
    adapters, loaded, unloaded = lru(2)
    adapters.get("a")
    adapters.get("b")
    adapters.get("a")  # now b is the least recently used
    adapters.get("c")
    assert unloaded == ["b"]
    assert adapters.paths() == ["a", "c"]
    assert adapters.get("b") == "adapter at b"  # loaded again when named again
    assert loaded == ["a", "b", "c", "b"]
    assert adapters.evictions == 2


def test_an_adapter_in_use_is_never_evicted() -> None:
    adapters, _, unloaded = lru(1)
    with adapters.pinned("a") as value:
        assert value == "adapter at a"
        with adapters.pinned("b"):
            assert unloaded == []  # both in use: over the limit rather than drop a call
            assert adapters.paths() == ["a", "b"]
        assert unloaded == ["b"]  # idle again and over the limit, while a is still in use
    assert adapters.paths() == ["a"]
    adapters.get("c")  # a is idle now: the limit holds again
    assert unloaded == ["b", "a"] and adapters.paths() == ["c"]


def test_a_failed_load_leaves_the_others_as_they_were() -> None:
    def load(path: str) -> str:
        if path == "bad":
            raise BadSpec(f"adapter {path} cannot be loaded")
        return path

    adapters = ResidentAdapters[str](1, load, lambda *_: None)
    adapters.get("good")
    with pytest.raises(BadSpec, match="adapter bad"):
        adapters.get("bad")
    assert adapters.paths() == ["good"]


def test_keep_only_drops_every_other_idle_adapter() -> None:
    adapters, _, unloaded = lru(4)
    for path in "abc":
        adapters.get(path)
    adapters.keep_only("d")
    assert adapters.paths() == ["d"] and sorted(unloaded) == ["a", "b", "c"]


@pytest.mark.parametrize("raw", ["0", "-2", "many"])
def test_a_bad_limit_is_a_spec_error_naming_the_option(raw: str) -> None:
    with pytest.raises(BadSpec, match=f"max_resident_adapters={raw!r} is not a positive integer"):
        resident_limit({"max_resident_adapters": raw})


def test_the_limit_defaults_to_eight() -> None:
    assert resident_limit({}) == DEFAULT_MAX_RESIDENT == 8
    assert resident_limit({"max_resident_adapters": "3"}) == 3
