"""The Redis connection every shared store uses, and how the gateway behaves when Redis goes away.

One connection pool per worker process (create_app runs once per worker), short socket timeouts. When
a command fails, Redis is marked down for a moment so the next requests do not each wait a timeout;
after that the next command tries again and the gateway recovers without a restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import redis

from .. import fastjson
from ..config import Settings

log = logging.getLogger("gateway.state")
T = TypeVar("T")
PREFIX = "hai:"          # every key the gateway writes starts with this
DOWN_BACKOFF = 1.0       # seconds Redis stays marked down after a failed command
MAX_IDLE = 512           # command()'s idle connections kept per process (one per busy thread at most)

# Applies a batch of writes, ARGV[1] = JSON [[kind, args...], ...], each through the handler its store
# registered. One op that Redis refuses does not stop the others; their errors come back. (The keys come
# inside the ops, not in KEYS: fine for a single Redis or a replicated one, not for Redis Cluster.)
_APPLY = """
local W = {{}}
{handlers}
local failed = {{}}
for i, op in ipairs(cjson.decode(ARGV[1])) do
  local handler = W[op[1]]
  if handler == nil then
    table.insert(failed, {{i, 'unknown write ' .. tostring(op[1])}})
  else
    local ok, err = pcall(handler, op)
    if not ok then table.insert(failed, {{i, op[1] .. ': ' .. tostring(err)}}) end
  end
end
return failed
"""
MAX_UNDELIVERED = 10000  # durable writes kept for another try while Redis is away (the oldest go first)


class StateUnavailable(Exception):
    """Redis is configured but not answering."""


class RedisStore:
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.monotonic):
        self.client, self.clock = client, clock
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._scripts: dict[str, redis.commands.core.Script] = {}
        self._local = threading.local()
        self._writers: dict[str, str] = {}
        self._durable: set[str] = set()
        self._undelivered: deque[tuple] = deque(maxlen=MAX_UNDELIVERED)
        self._apply: redis.commands.core.Script | None = None
        self._idle: list[redis.connection.AbstractConnection] = []  # command()'s connections, last used first

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        kwargs = dict(socket_timeout=settings.redis_socket_timeout,
                      socket_connect_timeout=settings.redis_socket_timeout,
                      health_check_interval=30, max_connections=512, decode_responses=True)
        if settings.redis_password:
            kwargs["password"] = settings.redis_password
        url = settings.redis_url
        if settings.redis_tls and url.startswith("redis://"):
            url = "rediss://" + url[len("redis://"):]
        return cls(redis.Redis.from_url(url, **kwargs))

    @property
    def up(self) -> bool:
        return self.clock() >= self._down_until

    def run(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run fn(client); a Redis failure marks it down briefly and raises StateUnavailable."""
        if not self.up:
            raise StateUnavailable("redis marked down")
        try:
            return fn(self.client)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            with self._lock:
                if self.up:
                    log.warning("redis unavailable: %s", type(exc).__name__)
                self._down_until = self.clock() + DOWN_BACKOFF
            raise StateUnavailable(type(exc).__name__) from exc

    def try_run(self, fn: Callable[[redis.Redis], T], default: T) -> T:
        """Like run(), but a failure returns `default` (for work that may be skipped: cache, stats)."""
        try:
            return self.run(fn)
        except StateUnavailable:
            return default

    def command(self, *args: object) -> object:
        """One command on a connection of the store's own, for the commands every request sends (the cache
        read, the batch of writes): redis-py's client and pool wrappers cost ~30 us of CPU per command
        on top of the command itself (scripts/bench/bench_clients.py). Same connection settings, health checks
        and errors as the client; call it inside run() or try_run() like any client call."""
        conn, reused = self._connection()
        try:
            try:
                conn.send_command(*args)
            except (redis.exceptions.ConnectionError, OSError):
                if not reused:
                    raise
                # Redis closed it just as it was reused (restart, idle timeout) and nothing was sent: once
                # more on a new connection.
                conn.disconnect()
                conn.send_command(*args)
            reply = conn.read_response()
        except redis.exceptions.ResponseError:
            self._keep(conn)  # Redis answered, with an error: the connection is fine
            raise
        except BaseException:
            conn.disconnect()  # cut mid-command: its state is unknown
            raise
        self._keep(conn)
        return reply

    def _connection(self) -> tuple[redis.connection.AbstractConnection, bool]:
        """An idle, still open connection (and True), or a new one (and False): an idle one Redis closed
        meanwhile connects again on its next command."""
        try:
            conn = self._idle.pop()  # a list's pop and append are atomic: no lock on this path
        except IndexError:
            pool = self.client.connection_pool
            return pool.connection_class(**pool.connection_kwargs), False
        try:
            stale = conn.can_read(timeout=0)  # something to read on an idle connection: closed, or garbage
        except (redis.exceptions.ConnectionError, OSError):
            stale = True
        if stale:
            conn.disconnect()
        return conn, not stale

    def _keep(self, conn: redis.connection.AbstractConnection) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.disconnect()

    def writer(self, kind: str, lua: str, durable: bool = False) -> None:
        """Register a kind of write: `lua` is the body of a Lua function(op) that applies one op, the JSON
        array [kind, args...] that write(kind, *args) queued. Each store registers its own kinds. A durable
        kind (spend) that Redis did not take is kept and sent again with the next batch, so it must be safe
        to apply twice."""
        if self._writers.get(kind) != lua:
            self._writers[kind] = lua
            self._apply = None
        if durable:
            self._durable.add(kind)

    def write(self, kind: str, *args: object) -> None:
        """A write no answer waits for (stats, spend, decision log, cache fill). Inside batch() it waits for
        the batch's single command; outside, it is sent alone. A failure loses the write (logged), never
        the request."""
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending.append((kind, *args))
        else:
            self._flush([(kind, *args)])

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Collect this thread's write() calls and send them as one command at the end (nested: the
        outermost batch sends). Reads inside still go to Redis at once."""
        if getattr(self._local, "pending", None) is not None:
            yield
            return
        self._local.pending = []
        try:
            yield
        finally:
            pending, self._local.pending = self._local.pending, None
            if pending:
                self._flush(pending)

    def _flush(self, ops: list[tuple]) -> None:
        # One EVALSHA carrying every op as JSON: a pipeline of one command per write cost 20-70 % more CPU
        # (redis-py packs and parses each command in Python; scripts/bench/bench_clients.py) and Redis a SHA1 of
        # each EVAL body.
        if self._undelivered:
            ops = self._take_undelivered() + ops
        apply = self._apply_script()
        payload = fastjson.dumpb(ops)
        try:
            try:
                failed = self.run(lambda r: self.command("EVALSHA", apply.sha, 0, payload))
            except redis.exceptions.NoScriptError:  # a restarted or flushed Redis: load it, once
                self.run(lambda r: self.command("SCRIPT", "LOAD", apply.script))
                failed = self.run(lambda r: self.command("EVALSHA", apply.sha, 0, payload))
        except (StateUnavailable, redis.exceptions.ResponseError) as exc:
            kept = self._keep_durable(ops)
            log.warning("%d shared-state write(s) not applied (%s); %d kept to send again", len(ops),
                        "redis unavailable" if isinstance(exc, StateUnavailable) else "refused by redis", kept)
            return
        if failed:
            refused = [ops[i - 1] for i, _ in failed if 0 < i <= len(ops)]
            self._keep_durable(refused)
            log.error("shared-state write(s) refused by redis: %s", "; ".join(str(m) for _, m in failed)[:500])

    def _keep_durable(self, ops: list[tuple]) -> int:
        kept = [op for op in ops if op[0] in self._durable]
        if len(self._undelivered) + len(kept) > MAX_UNDELIVERED:
            log.error("more than %d undelivered spend writes: the oldest are dropped (their reservations, "
                      "if any, are charged at their worst case when they expire)", MAX_UNDELIVERED)
        self._undelivered.extend(kept)
        return len(kept)

    def _take_undelivered(self) -> list[tuple]:
        taken = []
        while True:
            try:
                taken.append(self._undelivered.popleft())
            except IndexError:
                return taken

    def flush_undelivered(self) -> None:
        """Send the durable writes still waiting (at shutdown, or from a test)."""
        if self._undelivered:
            self._flush([])

    def _apply_script(self):
        if self._apply is None:
            handlers = "".join(f"W[{json.dumps(kind)}] = function(op)\n{lua}\nend\n"
                               for kind, lua in sorted(self._writers.items()))
            self._apply = self.client.register_script(_APPLY.format(handlers=handlers))
        return self._apply

    def script(self, source: str):
        """A registered Lua script (EVALSHA, reloaded by redis-py after a Redis restart)."""
        if source not in self._scripts:
            self._scripts[source] = self.client.register_script(source)
        return self._scripts[source]

    def ping(self) -> bool:
        return self.try_run(lambda r: bool(r.ping()), False)

    def close(self) -> None:
        self.flush_undelivered()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()
        self.client.close()
