"""Batch files and batch records, kept where they survive a restart.

File bytes (inputs, outputs, error files) live on disk under BATCH_DIR/files (a volume in Compose, in the
backup). Records (a file's owner, name, size and expiry; a batch's status, counts and progress) live in Redis
when the gateway has it (every worker and replica sees them; Redis persists them with AOF), else as JSON under
BATCH_DIR/records (one host). The results of a batch's lines are appended to BATCH_DIR/work/ID.jsonl as they
come, so a batch taken over after a restart never runs a finished line again.

One worker runs a batch at a time: it holds a lease (Redis SET NX with an expiry it renews; without Redis an
flock on BATCH_DIR/locks/ID, released by the kernel when the process dies).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from typing import Protocol

from .store import PREFIX, RedisStore

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


class Records(Protocol):
    def get(self, kind: str, rid: str) -> dict | None: ...
    def put(self, kind: str, rec: dict) -> None: ...
    def delete(self, kind: str, rid: str) -> None: ...
    def owned(self, kind: str, owner: str) -> list[dict]: ...
    def active(self) -> list[str]: ...
    def lease(self, batch_id: str, seconds: float) -> object | None: ...
    def renew(self, handle: object, seconds: float) -> None: ...
    def release(self, handle: object) -> None: ...
    def expired_files(self, now: float) -> list[str]: ...


class RedisRecords:
    def __init__(self, store: RedisStore):
        self.store = store

    def get(self, kind: str, rid: str) -> dict | None:
        raw = self.store.run(lambda r: r.get(f"{PREFIX}{kind}:{rid}"))
        return json.loads(raw) if raw else None

    def put(self, kind: str, rec: dict) -> None:
        def op(r):
            pipe = r.pipeline()
            pipe.set(f"{PREFIX}{kind}:{rec['id']}", json.dumps(rec))  # no expiry: volatile-lru never evicts it
            pipe.zadd(f"{PREFIX}{kind}s:{rec['owner']}", {rec["id"]: rec["created_at"]})
            if kind == "batch":
                (pipe.sadd if rec["status"] in ACTIVE else pipe.srem)(f"{PREFIX}batches:active", rec["id"])
            elif kind == "file":
                pipe.zadd(f"{PREFIX}files:expiry", {rec["id"]: rec.get("expires_at") or 2**40})
            pipe.execute()
        self.store.run(op)

    def delete(self, kind: str, rid: str) -> None:
        rec = self.get(kind, rid)
        if rec is None:
            return
        self.store.run(lambda r: r.pipeline().delete(f"{PREFIX}{kind}:{rid}").zrem(
            f"{PREFIX}{kind}s:{rec['owner']}", rid).zrem(f"{PREFIX}files:expiry", rid).execute())

    def owned(self, kind: str, owner: str) -> list[dict]:
        ids = self.store.run(lambda r: r.zrevrange(f"{PREFIX}{kind}s:{owner}", 0, 999))
        return [rec for rid in ids if (rec := self.get(kind, rid)) is not None]

    def active(self) -> list[str]:
        return sorted(self.store.run(lambda r: r.smembers(f"{PREFIX}batches:active")))

    def lease(self, batch_id: str, seconds: float) -> object | None:
        token = secrets.token_hex(8)
        got = self.store.run(lambda r: r.set(f"{PREFIX}batch-lease:{batch_id}", token, nx=True, px=int(seconds * 1000)))
        return (batch_id, token) if got else None

    def renew(self, handle: object, seconds: float) -> None:
        batch_id, token = handle
        key = f"{PREFIX}batch-lease:{batch_id}"
        self.store.run(lambda r: r.set(key, token, xx=True, px=int(seconds * 1000)) if r.get(key) == token else None)

    def release(self, handle: object) -> None:
        batch_id, token = handle
        key = f"{PREFIX}batch-lease:{batch_id}"
        self.store.try_run(lambda r: r.delete(key) if r.get(key) == token else None, None)

    def expired_files(self, now: float) -> list[str]:
        return list(self.store.run(lambda r: r.zrangebyscore(f"{PREFIX}files:expiry", "-inf", now)))


class DiskRecords:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, kind: str, rid: str) -> Path:
        return self.root / "records" / kind / f"{rid}.json"

    def get(self, kind: str, rid: str) -> dict | None:
        try:
            return json.loads(self._path(kind, rid).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def put(self, kind: str, rec: dict) -> None:
        path = self._path(kind, rec["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(rec))
        tmp.replace(path)  # atomic: a reader sees the old record or the new, never half

    def delete(self, kind: str, rid: str) -> None:
        self._path(kind, rid).unlink(missing_ok=True)

    def _all(self, kind: str) -> list[dict]:
        folder = self.root / "records" / kind
        return [rec for p in folder.glob("*.json") if (rec := self.get(kind, p.stem)) is not None] \
            if folder.exists() else []

    def owned(self, kind: str, owner: str) -> list[dict]:
        return sorted((r for r in self._all(kind) if r["owner"] == owner), key=lambda r: r["created_at"],
                      reverse=True)

    def active(self) -> list[str]:
        return sorted(r["id"] for r in self._all("batch") if r["status"] in ACTIVE)

    def lease(self, batch_id: str, seconds: float) -> object | None:
        path = self.root / "locks" / batch_id
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def renew(self, handle: object, seconds: float) -> None:
        return None  # held until released or the process ends

    def release(self, handle: object) -> None:
        os.close(handle)

    def expired_files(self, now: float) -> list[str]:
        return [r["id"] for r in self._all("file") if r.get("expires_at") and r["expires_at"] <= now]


class BatchStore:
    def __init__(self, root: Path, records: Records):
        self.root, self.records = root, records
        for sub in ("files", "work"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- files
    def add_file(self, owner: str, filename: str, purpose: str, data: bytes, ttl_seconds: float) -> dict:
        now = int(time.time())
        rec = {"id": "file-" + secrets.token_hex(12), "object": "file", "bytes": len(data), "created_at": now,
               "filename": filename, "purpose": purpose, "expires_at": now + int(ttl_seconds), "status": "processed",
               "owner": owner}
        path = self.file_path(rec["id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        self.records.put("file", rec)
        return rec

    def file(self, file_id: str, owner: str) -> dict | None:
        """The file if `owner` made it (another key's is as absent as a missing one)."""
        rec = self.records.get("file", file_id) if _safe(file_id) else None
        return rec if rec is not None and rec["owner"] == owner else None

    def file_path(self, file_id: str) -> Path:
        return self.root / "files" / file_id

    def delete_file(self, file_id: str) -> None:
        self.records.delete("file", file_id)
        self.file_path(file_id).unlink(missing_ok=True)

    def sweep(self, now: float) -> int:
        """Delete files past their expiry; returns how many."""
        gone = self.records.expired_files(now)
        for file_id in gone:
            self.delete_file(file_id)
        return len(gone)

    # ---------------------------------------------------------------- batches
    def batch(self, batch_id: str, owner: str | None) -> dict | None:
        """The batch if `owner` made it (None: whoever did), `cancelling` once a cancel was asked for."""
        rec = self.records.get("batch", batch_id) if _safe(batch_id) else None
        if rec is None or (owner is not None and rec["owner"] != owner):
            return None
        if rec["status"] in ACTIVE and rec["status"] != "cancelling":
            asked = self.records.get("cancel", batch_id)
            if asked is not None:
                rec.update(status="cancelling", cancelling_at=asked["created_at"])
        return rec

    def cancel(self, rec: dict) -> None:
        """Ask for a batch to stop: a record of its own, so the worker running it cannot write over it."""
        self.records.put("cancel", {"id": rec["id"], "owner": rec["owner"], "created_at": int(time.time())})

    def save(self, rec: dict) -> None:
        self.records.put("batch", rec)

    def batches(self, owner: str) -> list[dict]:
        return self.records.owned("batch", owner)

    def done_lines(self, batch_id: str) -> dict[int, dict]:
        """Line number -> its finished result, from the work log."""
        out: dict[int, dict] = {}
        path = self.root / "work" / f"{batch_id}.jsonl"
        if path.exists():
            for raw in path.read_text().splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue  # a line cut by a crash mid-write: that line runs again
                out[entry["line"]] = entry
        return out

    def finish_line(self, batch_id: str, entry: dict) -> None:
        with open(self.root / "work" / f"{batch_id}.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    def drop_work(self, batch_id: str) -> None:
        (self.root / "work" / f"{batch_id}.jsonl").unlink(missing_ok=True)


def _safe(rid: str) -> bool:
    """An id as the gateway makes them: no path tricks."""
    return bool(rid) and len(rid) <= 64 and all(c.isalnum() or c in "-_" for c in rid)
