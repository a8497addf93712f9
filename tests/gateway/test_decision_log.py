"""The decision log on Redis, as an admin and as one key read it: newest first, capped at the limit asked,
one key's entries only (never another's), found across pages of the shared stream."""

from __future__ import annotations

import redis as redis_py

from gateway.state import decisions
from gateway.state.decisions import RedisDecisionLog
from gateway.state.store import RedisStore


def test_one_keys_entries_newest_first_across_pages(redis_server, monkeypatch):
    monkeypatch.setattr(decisions, "_PAGE", 4)  # several pages for a few entries
    log = RedisDecisionLog(RedisStore(redis_py.Redis.from_url(redis_server.url, decode_responses=True)), 1000)
    for n in range(30):  # key a every third entry, b the rest
        log.append({"request_id": f"r{n}", "key_id": "a" if n % 3 == 0 else "b", "cost": 0.5})
    every = log.recent(5)
    assert [e["request_id"] for e in every] == ["r29", "r28", "r27", "r26", "r25"]
    mine = log.recent(4, key_id="a")
    assert [e["request_id"] for e in mine] == ["r27", "r24", "r21", "r18"]  # newest first, a's alone
    assert all(e["key_id"] == "a" and e["cost"] == 0.5 for e in mine)
    assert [e["request_id"] for e in log.recent(100, key_id="a")] == [f"r{n}" for n in range(27, -1, -3)]
    assert log.recent(3, key_id="nobody") == []
    ids = [e["id"] for e in log.recent(100, key_id="a")]
    assert len(set(ids)) == len(ids)  # a page boundary reads no entry twice
