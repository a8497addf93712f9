"""Decision-log entries read back typed, whichever gateway wrote them (older ones wrote every value as a
string, one Redis field per key or one JSON field)."""

from __future__ import annotations

import json

from gateway.state.decisions import MemoryDecisionLog, _entry


def test_an_older_gateways_string_entry_reads_back_typed():
    old = {"score": "0.6594", "cost": "0.00008800", "latency_seconds": "0.0100", "cached": "false",
           "fallback": "true", "attempts": "2", "model": "claude-sonnet"}
    for fields in (old, {"e": json.dumps(old)}):
        entry = _entry(fields)
        assert entry["score"] == 0.6594 and entry["cost"] == 0.000088 and entry["attempts"] == 2
        assert entry["cached"] is False and entry["fallback"] is True and entry["model"] == "claude-sonnet"


def test_newest_first_and_capped():
    log = MemoryDecisionLog(maxlen=3)
    for n in range(5):
        log.append({"request_id": str(n), "key_id": "a" if n % 2 else "b"})
    assert [e["request_id"] for e in log.recent(10)] == ["4", "3", "2"]
    assert [e["request_id"] for e in log.recent(1, key_id="a")] == ["3"]
