"""The in-process cache (no REDIS_URL): it holds at most `entries` answers, forgets the least recently used
first, and an answer is gone the moment its TTL ends. Survivors of the mutation run asked for these."""

from __future__ import annotations

from gateway.state.cache import CachedAnswer, MemoryCache


def answer(text: str) -> CachedAnswer:
    return CachedAnswer("tinyllama", "ollama", "local-small", text, "stop", 3, 4)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_holds_exactly_its_capacity_and_evicts_the_least_recently_used():
    cache = MemoryCache(clock=Clock(), entries=3)
    for key in ("a", "b", "c"):
        cache.put(key, answer(key), ttl=60)
    assert all(cache.get(k) for k in ("a", "b", "c"))  # three fit in three (a used last of all: b is oldest now)
    assert cache.get("a").text == "a"
    cache.put("d", answer("d"), ttl=60)
    assert cache.get("b") is None  # the least recently used went, not the newest
    assert [cache.get(k).text for k in ("a", "c", "d")] == ["a", "c", "d"]


def test_an_answer_is_gone_when_its_ttl_ends():
    clock = Clock()
    cache = MemoryCache(clock=clock, entries=10)
    cache.put("k", answer("x"), ttl=30)
    clock.now = 1029.5
    assert cache.get("k").text == "x"
    clock.now = 1030.0  # exactly at the end of its TTL
    assert cache.get("k") is None
