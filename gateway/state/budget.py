"""Spend and budgets: what every request cost, what it would have cost on the cloud, and reservations
that keep concurrent paid calls inside the monthly budget.

Before a paid call its worst-case cost is reserved atomically (spent + reserved + amount <= limit);
after it the reservation is settled to what the call cost (a failed call too: gateway/billing.py), or
released when the upstream billed nothing. Because the worst case bounds the real cost, recorded spend
can never pass the budget, whatever the concurrency. Months are UTC. A reservation that is still open
when its lifetime ends (its worker died, its settle never arrived) becomes spend at its worst case:
never nothing. A settle that arrives after that, or twice, changes nothing.

RedisLedger shares all of this between workers and replicas (Lua scripts, one round trip each);
MemoryLedger does the same for a single process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .store import PREFIX, RedisStore

DAY_TTL = 40 * 86400
# A month's spend, budget and reservations never expire: Redis runs with maxmemory-policy volatile-lru, which
# evicts only keys with a lifetime (cached answers first), so money can never be evicted. A year of months
# is a few tens of KB. Day hashes (a breakdown, not what budgets read) expire.


@dataclass(frozen=True)
class Reservation:
    id: str
    month: str
    amount: float
    key_id: str | None
    model: str = ""     # what the worst case is charged to if the reservation expires
    backend: str = ""


@dataclass(frozen=True)
class Limits:
    monthly_usd: float | None          # None: no global budget
    per_key_monthly_usd: float | None  # None: no per-key budget
    soft_share: float = 0.8


class Ledger(Protocol):
    def reserve(self, key_id: str | None, amount: float, ttl: float, model: str = "",
                backend: str = "") -> Reservation | None: ...
    def release(self, reservation: Reservation) -> None: ...
    def record(self, *, cost: float, cloud_cost: float, model: str, backend: str, key_id: str | None,
               reservation: Reservation | None, tag: str = "", saved: dict[str, float] | None = None) -> None:
        """saved: what a lever saved on this call by name (prompt caching, the batch discount), added to
        `saved:NAME` and the key's `saved:NAME:KEY`."""
    def month_totals(self, month: str | None = None) -> dict[str, float]: ...


def month_of(t: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(t))


def day_of(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def budget_status(totals: dict[str, float], limits: Limits, month: str, key_id: str | None = None) -> dict:
    """The /api/v1/budget body from a month's totals: global, or one key's own."""
    if key_id is None:
        limit, spent, reserved = limits.monthly_usd, totals.get("total", 0.0), totals.get("reserved", 0.0)
    else:
        limit = limits.per_key_monthly_usd
        spent, reserved = totals.get(f"key:{key_id}", 0.0), totals.get(f"reserved:{key_id}", 0.0)
    remaining = None if limit is None else round(max(0.0, limit - spent - reserved), 8)
    soft = limit is not None and limit > 0 and (spent + reserved) >= limits.soft_share * limit
    body = {"month": month, "limit_usd": limit, "spent_usd": round(spent, 8), "reserved_usd": round(reserved, 8),
            "remaining_usd": remaining, "soft_limit_reached": soft}
    if key_id is not None:
        body["key"] = key_id
    return body


def budget_left(totals: dict[str, float], limits: Limits, key_id: str | None) -> tuple[float | None, float | None]:
    """(share of the budget used, USD left) for routing: the tighter of the global and the key's own budget;
    (None, None) when no budget applies."""
    views = [budget_status(totals, limits, "", None)] + ([budget_status(totals, limits, "", key_id)] if key_id else [])
    views = [v for v in views if v["limit_usd"] is not None]
    if not views:
        return None, None
    share = max((v["spent_usd"] + v["reserved_usd"]) / v["limit_usd"] if v["limit_usd"] else 1.0 for v in views)
    return share, min(v["remaining_usd"] for v in views)


# The reason given everywhere paid calls pause because Redis cannot guard the budget.
UNGUARDED = "Redis is down, so spend cannot be guarded: paid calls are paused (REDIS_FAILURE_POLICY)"


# --------------------------------------------------------------------------- Redis

# take(): close an open reservation (None if it is not open: settled already, or expired and charged);
# spend(): add a cost to a month or day hash, by model, backend and key.
_HELPERS = """
local function take(amounts, zset, month, id)
  local v = redis.call('HGET', amounts, id)
  redis.call('ZREM', zset, id)
  if not v then return nil end
  redis.call('HDEL', amounts, id)
  local f = {}
  for part in string.gmatch(v .. '|', '([^|]*)|') do table.insert(f, part) end
  local amt = tonumber(f[1])
  redis.call('HINCRBYFLOAT', month, 'reserved', -amt)
  if f[2] ~= '' then redis.call('HINCRBYFLOAT', month, 'reserved:' .. f[2], -amt) end
  return {amt, f[2], f[3] or '', f[4] or ''}
end
local function spend(h, cost, cloud, model, backend, key)
  redis.call('HINCRBYFLOAT', h, 'total', cost)
  redis.call('HINCRBYFLOAT', h, 'cloud_only', cloud)
  redis.call('HINCRBYFLOAT', h, 'model:' .. model, cost)
  redis.call('HINCRBYFLOAT', h, 'backend:' .. backend, cost)
  if key ~= '' then
    redis.call('HINCRBYFLOAT', h, 'key:' .. key, cost)
    redis.call('HINCRBYFLOAT', h, 'key_cloud_only:' .. key, cloud)
  end
end
"""

# KEYS: month hash, reservation zset (id -> expiry), reservation amounts (id -> "amount|key|model|backend"),
#       today's hash
# ARGV: id, amount, limit (-1: none), key id ('' none), key limit (-1: none), now, expires at, model, backend,
#       day ttl
_RESERVE = _HELPERS + """
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[6])) do
  local r = take(KEYS[3], KEYS[2], KEYS[1], id)
  if r then  -- still open at the end of its lifetime: its worst case is spent
    spend(KEYS[1], r[1], r[1], r[3], r[4], r[2])
    spend(KEYS[4], r[1], r[1], r[3], r[4], r[2])
    redis.call('HINCRBYFLOAT', KEYS[1], 'expired', r[1])
    redis.call('EXPIRE', KEYS[4], ARGV[10])
  end
end
local amount, limit, key, klimit = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local function used(field, rfield)
  return tonumber(redis.call('HGET', KEYS[1], field) or '0') + tonumber(redis.call('HGET', KEYS[1], rfield) or '0')
end
if limit >= 0 and used('total', 'reserved') + amount > limit then return 'global' end
if key ~= '' and klimit >= 0 and used('key:' .. key, 'reserved:' .. key) + amount > klimit then return 'key' end
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', amount)
if key ~= '' then redis.call('HINCRBYFLOAT', KEYS[1], 'reserved:' .. key, amount) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. '|' .. key .. '|' .. ARGV[8] .. '|' .. ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
return 'ok'
"""

_RELEASE = _HELPERS + "take(KEYS[3], KEYS[2], KEYS[1], ARGV[1])\nreturn 1\n"

# A write (RedisStore.writer, delivered or retried): ["spend", month hash, day hash, reservation zset,
# reservation amounts, reservation id ('' none), cost, cloud-only cost, model, backend, key id ('' none),
# day ttl, tag ('' none: else the cost is also added to 'tag:TAG'), then pairs of lever name and USD saved].
# Settling a reservation that is no longer open changes nothing: it was settled already (a retried write) or it
# expired and its worst case was spent.
_RECORD = _HELPERS + """
if op[6] ~= '' and take(op[5], op[4], op[2], op[6]) == nil then return end
spend(op[2], op[7], op[8], op[9], op[10], op[11])
spend(op[3], op[7], op[8], op[9], op[10], op[11])
if op[13] and op[13] ~= '' then
  redis.call('HINCRBYFLOAT', op[2], 'tag:' .. op[13], op[7])
  redis.call('HINCRBYFLOAT', op[3], 'tag:' .. op[13], op[7])
end
local i = 14
while op[i] do
  for _, h in ipairs({op[2], op[3]}) do
    redis.call('HINCRBYFLOAT', h, 'saved:' .. op[i], op[i + 1])
    if op[11] ~= '' then redis.call('HINCRBYFLOAT', h, 'saved:' .. op[i] .. ':' .. op[11], op[i + 1]) end
  end
  i = i + 2
end
redis.call('EXPIRE', op[3], op[12])
"""


class RedisLedger:
    def __init__(self, store: RedisStore, limits: Limits, wall: Callable[[], float] = time.time):
        self.store, self.limits, self.wall = store, limits, wall
        store.writer("spend", _RECORD, durable=True)

    @staticmethod
    def _keys(month: str) -> tuple[str, str, str]:
        return f"{PREFIX}spend:{month}", f"{PREFIX}resv:{month}", f"{PREFIX}resv:{month}:amounts"

    def reserve(self, key_id: str | None, amount: float, ttl: float, model: str = "",
                backend: str = "") -> Reservation | None:
        now = self.wall()
        month = month_of(now)
        res = Reservation(uuid.uuid4().hex, month, amount, key_id, model, backend)
        limit = -1 if self.limits.monthly_usd is None else self.limits.monthly_usd
        klimit = -1 if self.limits.per_key_monthly_usd is None else self.limits.per_key_monthly_usd
        script = self.store.script(_RESERVE)
        keys = (*self._keys(month), f"{PREFIX}spend:{day_of(now)}")
        verdict = self.store.run(lambda r: script(keys=keys, args=[
            res.id, repr(amount), repr(limit), key_id or "", repr(klimit), repr(now), repr(now + ttl), model,
            backend, DAY_TTL], client=r))
        return res if verdict == "ok" else None

    def release(self, reservation: Reservation) -> None:
        script = self.store.script(_RELEASE)
        self.store.try_run(lambda r: script(keys=self._keys(reservation.month), args=[reservation.id], client=r),
                           None)

    def record(self, *, cost: float, cloud_cost: float, model: str, backend: str, key_id: str | None,
               reservation: Reservation | None, tag: str = "", saved: dict[str, float] | None = None) -> None:
        now = self.wall()
        month = reservation.month if reservation else month_of(now)
        month_hash, zset, amounts = self._keys(month)
        levers = [x for name, usd in (saved or {}).items() if usd for x in (name, repr(usd))]
        self.store.write("spend", month_hash, f"{PREFIX}spend:{day_of(now)}", zset, amounts,
                         reservation.id if reservation else "", repr(cost), repr(cloud_cost), model, backend,
                         key_id or "", DAY_TTL, tag, *levers)

    def month_totals(self, month: str | None = None) -> dict[str, float]:
        month = month or month_of(self.wall())
        raw = self.store.run(lambda r: r.hgetall(f"{PREFIX}spend:{month}"))
        return {k: float(v) for k, v in raw.items()}


# --------------------------------------------------------------------------- one process


class MemoryLedger:
    def __init__(self, limits: Limits, wall: Callable[[], float] = time.time):
        self.limits, self.wall = limits, wall
        self._lock = threading.Lock()
        self._months: dict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._open: dict[str, tuple[Reservation, float]] = {}  # id -> (reservation, expires at)

    def _take(self, res: Reservation) -> bool:
        """Close an open reservation; False if it was not open."""
        if self._open.pop(res.id, None) is None:
            return False
        totals = self._months[res.month]
        totals["reserved"] -= res.amount
        if res.key_id:
            totals[f"reserved:{res.key_id}"] -= res.amount
        return True

    def _spend(self, month: str, cost: float, cloud_cost: float, model: str, backend: str,
               key_id: str | None) -> None:
        t = self._months[month]
        for field in ("total", f"model:{model}", f"backend:{backend}") + ((f"key:{key_id}",) if key_id else ()):
            t[field] += cost
        t["cloud_only"] += cloud_cost
        if key_id:
            t[f"key_cloud_only:{key_id}"] += cloud_cost

    def reserve(self, key_id: str | None, amount: float, ttl: float, model: str = "",
                backend: str = "") -> Reservation | None:
        now = self.wall()
        with self._lock:
            for res, expires in list(self._open.values()):
                if expires <= now and self._take(res):  # still open at the end of its lifetime: spent
                    self._spend(res.month, res.amount, res.amount, res.model, res.backend, res.key_id)
                    self._months[res.month]["expired"] += res.amount
            month = month_of(now)
            t = self._months[month]
            lim, klim = self.limits.monthly_usd, self.limits.per_key_monthly_usd
            if lim is not None and t["total"] + t["reserved"] + amount > lim:
                return None
            if key_id and klim is not None and t[f"key:{key_id}"] + t[f"reserved:{key_id}"] + amount > klim:
                return None
            res = Reservation(uuid.uuid4().hex, month, amount, key_id, model, backend)
            t["reserved"] += amount
            if key_id:
                t[f"reserved:{key_id}"] += amount
            self._open[res.id] = (res, now + ttl)
            return res

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            self._take(reservation)

    def record(self, *, cost: float, cloud_cost: float, model: str, backend: str, key_id: str | None,
               reservation: Reservation | None, tag: str = "", saved: dict[str, float] | None = None) -> None:
        with self._lock:
            if reservation is not None and not self._take(reservation):
                return  # settled already, or expired and charged its worst case
            month = reservation.month if reservation else month_of(self.wall())
            self._spend(month, cost, cloud_cost, model, backend, key_id)
            if tag:
                self._months[month][f"tag:{tag}"] += cost
            for name, usd in (saved or {}).items():
                self._months[month][f"saved:{name}"] += usd
                if key_id:
                    self._months[month][f"saved:{name}:{key_id}"] += usd

    def month_totals(self, month: str | None = None) -> dict[str, float]:
        with self._lock:
            return dict(self._months[month or month_of(self.wall())])
