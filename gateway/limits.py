"""The plan's limits and the key's own, enforced on every /v1 call in one Redis round trip.

- Requests and tokens per minute, per account (the plan's) and per AURA key (lower
  ones the owner set): sliding windows — this minute's count plus the previous
  minute's weighted by how much of it still overlaps — so a burst at a minute's
  boundary cannot double a limit. Tokens (prompt + completion, as the provider
  reported them) are charged when a call ends; a call is refused while the window
  is already full, as OpenAI does.
- Requests per month: one counter per account and calendar month (UTC), seeded
  from the usage rollups the first time it is needed.
- Calls in flight per account: a set of request ids with their start times, so a
  tenant cannot hold every web worker; a crashed node's entries age out.

A refused call is not counted. Every web node shares the counters: one Lua script
checks and counts everything atomically (``admit``), one pipeline settles a call
(``finish``). Without Redis (the embedded single-process default) the same rules
run on an in-process table. If Redis is down, authenticated calls go through
(fail open, logged by ``aura.cache``) rather than fail for everyone.
"""

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass

from django.utils import timezone
from redis.exceptions import NoScriptError

from aura import cache
from billing.plans import Plan
from metrics.selectors import month_start, month_totals

from .errors import ApiError
from .services import api_key_touch

log = logging.getLogger(__name__)

WINDOW_TTL = 120  # a minute's counter outlives the next minute, which still reads it
QUOTA_TTL = 40 * 86400
IN_FLIGHT_STALE = 15 * 60  # longer than any call may last (gunicorn's timeout, streams included)
TOUCH_SECONDS = 60

# Statuses the check returns.
OK, RPM, TPM, QUOTA, CONCURRENCY, UNSEEDED, STALE = 0, 1, 2, 3, 4, -1, -2

# KEYS 1-11: _names(); then the peeked keys, the first ARGV[13] of them expected to hold entries
# whose SHA-1s are ARGV[14...]: if one does not, nothing is counted (STALE).
_CHECK = """
local w = tonumber(ARGV[1])
local now = {0, 0, 0, 0, 0, 0, 0}  -- this minute's own counts, by key index (returned: see _refill)
local function used(cur, prev)
  now[cur] = tonumber(redis.call('GET', KEYS[cur]) or 0)
  return now[cur] + w * tonumber(redis.call('GET', KEYS[prev]) or 0)
end
local peeked = {}
for i = 12, #KEYS do peeked[#peeked + 1] = redis.call('GET', KEYS[i]) or '' end
for j = 1, tonumber(ARGV[13]) do
  if redis.sha1hex(peeked[j]) ~= ARGV[13 + j] then return {-2, 0, 0, 0, 0, 0, 0, 0, peeked} end
end
local touched = redis.call('SET', KEYS[11], 1, 'EX', ARGV[11], 'NX') and 1 or 0
local quota = redis.call('GET', KEYS[9])
if not quota then return {-1, 0, 0, 0, 0, 0, 0, touched, peeked} end
quota = tonumber(quota)
local a_rpm, k_rpm, a_tpm, k_tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ar, kr, at, kt = used(1, 2), 0, used(5, 6), 0
if k_rpm > 0 then kr = used(3, 4) end
if k_tpm > 0 then kt = used(7, 8) end
redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', tonumber(ARGV[8]) - tonumber(ARGV[10]))
local flight = redis.call('ZCARD', KEYS[10])
local status = 0
if ar + 1 > a_rpm or (k_rpm > 0 and kr + 1 > k_rpm) then status = 1
elseif at >= a_tpm or (k_tpm > 0 and kt >= k_tpm) then status = 2
elseif quota + 1 > tonumber(ARGV[6]) then status = 3
elseif flight + 1 > tonumber(ARGV[7]) then status = 4
end
if status == 0 then
  ar, quota, flight = ar + 1, quota + 1, flight + 1
  now[1] = redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], ARGV[12])
  if k_rpm > 0 then kr = kr + 1; now[3] = redis.call('INCR', KEYS[3]); redis.call('EXPIRE', KEYS[3], ARGV[12]) end
  redis.call('INCR', KEYS[9])
  redis.call('ZADD', KEYS[10], ARGV[8], ARGV[9]); redis.call('EXPIRE', KEYS[10], ARGV[10])
end
return {status, math.floor(ar * 1000), math.floor(kr * 1000), math.floor(at), math.floor(kt), quota, flight, touched, peeked,
        now[1], now[3], now[5], now[7]}
"""


@dataclass(frozen=True)
class Limits:
    """What binds one call: the plan's limits and the key's own (0: the key sets none)."""

    rpm: int
    key_rpm: int
    tpm: int
    key_tpm: int
    monthly: int
    concurrent: int

    @classmethod
    def of(cls, plan: Plan, caller) -> "Limits":
        return cls(
            rpm=plan.requests_per_minute,
            key_rpm=caller.rpm_limit or 0,
            tpm=plan.tokens_per_minute,
            key_tpm=caller.tpm_limit or 0,
            monthly=plan.monthly_requests,
            concurrent=plan.concurrent_requests,
        )


@dataclass(frozen=True)
class Counts:
    """The windows as the check saw them (this call included when admitted)."""

    status: int
    rpm: float
    key_rpm: float
    tpm: int
    key_tpm: int
    month: int
    in_flight: int
    touched: bool
    peeked: dict  # the extra keys read in the same round trip, by name (None: absent)
    # This minute's own counts (rpm, key_rpm, tpm, key_tpm), and how far into the minute the check ran:
    # how long a full window takes to have room again depends on which minute holds what it counts.
    current: tuple = (0, 0, 0, 0)
    into: float = 0.0


def _names(user_id: int, key_id: int, minute: int, month: str) -> list[str]:
    return [
        f"rl:r:a:{user_id}:{minute}",
        f"rl:r:a:{user_id}:{minute - 1}",
        f"rl:r:k:{key_id}:{minute}",
        f"rl:r:k:{key_id}:{minute - 1}",
        f"rl:t:a:{user_id}:{minute}",
        f"rl:t:a:{user_id}:{minute - 1}",
        f"rl:t:k:{key_id}:{minute}",
        f"rl:t:k:{key_id}:{minute - 1}",
        f"rl:q:{user_id}:{month}",
        f"rl:f:{user_id}",
        f"rl:touch:{key_id}",
    ]


# The check, in Redis --------------------------------------------------------------------

_CHECK_SHA = hashlib.sha1(_CHECK.encode()).hexdigest()  # noqa: S324 -- the name Redis caches the script under


def _redis_check(client, names: list[str], args: list) -> list[int]:
    """One run of the check, in a round trip shared with the process's other calls (``cache.round_trip``)."""
    (reply,) = cache.round_trip(client, lambda pipe: pipe.evalsha(_CHECK_SHA, len(names), *names, *args))
    if isinstance(reply, NoScriptError):  # Redis restarted or was flushed: teach it the script again
        client.script_load(_CHECK)
        (reply,) = cache.round_trip(client, lambda pipe: pipe.evalsha(_CHECK_SHA, len(names), *names, *args))
    if isinstance(reply, Exception):
        raise reply
    return reply


def _redis_seed(client, name: str, value: int) -> None:
    client.set(name, value, ex=QUOTA_TTL, nx=True)


def _finish_commands(user_id: int, key_id: int, minute: int, request_id: str, tokens: int, key_tpm: bool, also=None):
    def add(pipe):
        if also is not None:
            also(pipe)
        pipe.zrem(f"rl:f:{user_id}", request_id)
        if tokens:
            for name in [f"rl:t:a:{user_id}:{minute}"] + ([f"rl:t:k:{key_id}:{minute}"] if key_tpm else []):
                pipe.incrby(name, tokens)
                pipe.expire(name, WINDOW_TTL)

    return add


def _failure(replies: list | None, error: Exception | None) -> Exception | None:
    return error if error is not None else next((reply for reply in replies if isinstance(reply, Exception)), None)


def _redis_finish(client, user_id: int, key_id: int, minute: int, request_id: str, tokens: int, key_tpm: bool, also=None) -> None:
    failure = _failure(cache.round_trip(client, _finish_commands(user_id, key_id, minute, request_id, tokens, key_tpm, also)), None)
    if failure is not None:
        raise failure


# The same check, in process (embedded mode: one process, no Redis) ---------------------------

_local: dict[str, object] = {}
_local_expiry: dict[str, float] = {}
_local_lock = threading.Lock()


def _lget(name: str, now: float, default=0):
    if _local_expiry.get(name, math.inf) <= now:
        _local.pop(name, None)
        _local_expiry.pop(name, None)
    return _local.get(name, default)


def _lput(name: str, value, now: float, ttl: int) -> None:
    _local[name], _local_expiry[name] = value, now + ttl


def _local_check(names: list[str], args: list) -> list[int]:
    weight, a_rpm, k_rpm, a_tpm, k_tpm, monthly, concurrent, now, request_id, stale, touch_ttl, window_ttl = args[:12]
    with _local_lock:
        touched = _lget(names[10], now, None) is None
        if touched:
            _lput(names[10], 1, now, touch_ttl)
        quota = _lget(names[8], now, None)
        if quota is None:
            return [UNSEEDED, 0, 0, 0, 0, 0, 0, int(touched), []]

        def used(cur, prev):
            return _lget(names[cur], now) + weight * _lget(names[prev], now)

        ar, at = used(0, 1), used(4, 5)
        kr = used(2, 3) if k_rpm else 0
        kt = used(6, 7) if k_tpm else 0
        flight = {rid: t for rid, t in _lget(names[9], now, {}).items() if t > now - stale}
        status = OK
        if ar + 1 > a_rpm or (k_rpm and kr + 1 > k_rpm):
            status = RPM
        elif at >= a_tpm or (k_tpm and kt >= k_tpm):
            status = TPM
        elif quota + 1 > monthly:
            status = QUOTA
        elif len(flight) + 1 > concurrent:
            status = CONCURRENCY
        if status == OK:
            ar, quota = ar + 1, quota + 1
            _lput(names[0], _lget(names[0], now) + 1, now, window_ttl)
            if k_rpm:
                kr += 1
                _lput(names[2], _lget(names[2], now) + 1, now, window_ttl)
            _lput(names[8], quota, now, QUOTA_TTL)
            flight[request_id] = now
        _lput(names[9], flight, now, stale)
        current = [_lget(names[0], now), _lget(names[2], now) if k_rpm else 0, _lget(names[4], now), _lget(names[6], now) if k_tpm else 0]
        return [
            status,
            math.floor(ar * 1000),
            math.floor(kr * 1000),
            math.floor(at),
            math.floor(kt),
            quota,
            len(flight),
            int(touched),
            [],
            *current,
        ]


def _local_seed(name: str, value: int, now: float) -> None:
    with _local_lock:
        if _lget(name, now, None) is None:
            _lput(name, value, now, QUOTA_TTL)


def _local_finish(user_id: int, key_id: int, minute: int, request_id: str, tokens: int, key_tpm: bool) -> None:
    now = time.time()
    with _local_lock:
        _lget(f"rl:f:{user_id}", now, {}).pop(request_id, None)
        if tokens:
            for name in [f"rl:t:a:{user_id}:{minute}"] + ([f"rl:t:k:{key_id}:{minute}"] if key_tpm else []):
                _lput(name, _lget(name, now) + tokens, now, WINDOW_TTL)


def local_reset() -> None:
    """Forget the in-process counters (tests)."""
    with _local_lock:
        _local.clear()
        _local_expiry.clear()


# The rules ----------------------------------------------------------------------------


def check(
    user_id: int, key_id: int, limits: Limits, request_id: str, now: float, peek: tuple[str, ...] = (), expect: dict | None = None
) -> Counts | None:
    """Check and count one call atomically; None when the shared cache is unavailable (fail open).

    ``peek`` names other cache keys to read in the same round trip (Redis only). ``expect`` maps
    cache keys to the SHA-1 of the entries they must hold for the call to be counted at all
    (status STALE otherwise); they are read (peeked) too.
    """
    expect = expect or {}
    peek = (*expect, *(name for name in peek if name not in expect))
    minute, into = divmod(now, 60)
    month = time.gmtime(minute * 60)  # (the counters' months are UTC's, as month_start's)
    names = _names(user_id, key_id, int(minute), f"{month.tm_year}{month.tm_mon:02d}")
    client = None
    args = [
        1 - into / 60,
        limits.rpm,
        limits.key_rpm,
        limits.tpm,
        limits.key_tpm,
        limits.monthly,
        limits.concurrent,
        now,
        request_id,
        IN_FLIGHT_STALE,
        TOUCH_SECONDS,
        WINDOW_TTL,
        len(expect),
        *expect.values(),
    ]

    def run():
        nonlocal client
        client = cache.redis()
        if expect and client is None:
            return [STALE, 0, 0, 0, 0, 0, 0, 0, []]  # only Redis can tell whether its entries changed
        keys = names + [cache.raw_key(name) for name in peek] if client else names
        result = _redis_check(client, keys, args) if client else _local_check(names, args)
        if result[0] == UNSEEDED:
            # Seeded from the rollups, which outlive the 14-day raw records: a counter lost late in the month stays right.
            seed = month_totals(user_id)["client_requests"]
            _redis_seed(client, names[8], seed) if client else _local_seed(names[8], seed, now)
            touched = result[7]
            result = _redis_check(client, keys, args) if client else _local_check(names, args)
            result[7] = touched  # the first run set the once-a-minute marker
        return result

    result = cache.guarded("rate limits", run, None)
    if result is None:
        return None
    status, rpm, key_rpm, tpm, key_tpm, month, flight, touched = (int(v) for v in result[:8])
    peeked = dict(zip(peek, (value or None for value in result[8]), strict=True)) if client else {}
    current = tuple(int(v) for v in result[9:13]) if len(result) >= 13 else (0, 0, 0, 0)
    return Counts(status, rpm / 1000, key_rpm / 1000, tpm, key_tpm, month, flight, bool(touched), peeked, current, into)


def finish(user_id: int, key_id: int, request_id: str, tokens: int, key_tpm: bool, also=None) -> bool:
    """A call has ended: free its in-flight slot and charge its tokens to this minute's windows.

    ``also(pipe)`` adds commands of the caller's to the same Redis round trip (the call's usage
    records, for the spool). Returns whether that round trip went through.
    """
    minute = int(time.time() // 60)

    def run():
        client = cache.redis()
        if client:
            _redis_finish(client, user_id, key_id, minute, request_id, tokens, key_tpm, also)
            return True
        _local_finish(user_id, key_id, minute, request_id, tokens, key_tpm)
        return False

    return cache.guarded("rate limits", run, False)


def finish_later(user_id: int, key_id: int, request_id: str, tokens: int, key_tpm: bool, also, settled) -> None:
    """``finish`` for a call whose answer has left, in a web worker (gevent): its commands go with
    the next Redis round trip this process makes, usually the next call's admission (ahead of
    its check: the slot is free for it), or in one of their own as soon as the event loop turns.
    Nobody waits for them. ``settled(handed)`` follows, from whichever greenlet made the round
    trip, so it must be quick: ``handed`` says whether Redis took everything."""
    minute = int(time.time() // 60)
    client = cache.redis()
    if client is None or cache.skipping():
        settled(finish(user_id, key_id, request_id, tokens, key_tpm, also))
        return

    def then(replies, error):
        failure = _failure(replies, error)
        if failure is not None:
            cache.failed("rate limits", failure)
        settled(failure is None)

    try:
        cache.defer(client, _finish_commands(user_id, key_id, minute, request_id, tokens, key_tpm, also), then)
    except Exception as error:  # never raised so far; if it were, the records would still be handed over
        cache.failed("rate limits", error)
        settled(False)


def touch_key(key_id: int) -> None:
    """Record a key's "last used": a courtesy, so a failure is logged and the call goes on."""
    try:
        api_key_touch(key_id)
    except Exception as error:
        log.warning("last use of key %s not recorded: %s", key_id, type(error).__name__)


def _reset(seconds: float) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: 1s, 6m0s, 20ms (0s: nothing used)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _binding(windows: list[tuple[int, float, int]]) -> tuple[int, float, int]:
    """Of (limit, used, this minute's own count) windows, the one with the least room left (limit 0: not set)."""
    return min(((limit, used, cur) for limit, used, cur in windows if limit), key=lambda w: w[0] - w[1])


def _refill(limit: int, used: float, cur: int, into: float) -> float:
    """Seconds until a sliding window holding ``used`` (``cur`` of it counted this minute, the rest the
    previous minute's share, which fades to nothing by this minute's end) has room for one more.

    While this minute's own count leaves room, the previous minute's share only has to fade enough;
    otherwise nothing leaves before this minute ends, and then this minute's count fades in its turn.
    """
    room, left = limit - 1, 60 - into
    if used <= room:
        return 60 / limit  # not full: the time one call's share takes to fade
    if cur <= room:
        return left * (1 - (room - cur) / (used - cur))
    return left + 60 * (1 - max(room, 0) / cur)


def _until_reset(limit: int, used: float, cur: int, into: float) -> float:
    """OpenAI's x-ratelimit-reset-*: the time until the limit is back to its initial state. A window's
    use fades at the limit's own rate (a full window empties in a minute), so what is used takes
    ``used / limit`` of a minute; when the window is full, at least until it has room again."""
    if used <= 0:
        return 0.0
    full = _refill(limit, used, cur, into) if used > limit - 1 else 0.0
    return max(used * 60 / limit, full)


def headers(limits: Limits, counts: Counts) -> dict:
    ar, kr, at, kt = counts.current
    r_limit, r_used, r_cur = _binding([(limits.rpm, counts.rpm, ar), (limits.key_rpm, counts.key_rpm, kr)])
    t_limit, t_used, t_cur = _binding([(limits.tpm, counts.tpm, at), (limits.key_tpm, counts.key_tpm, kt)])
    return {
        "x-ratelimit-limit-requests": str(r_limit),
        "x-ratelimit-remaining-requests": str(max(r_limit - math.ceil(r_used), 0)),
        "x-ratelimit-reset-requests": _reset(_until_reset(r_limit, r_used, r_cur, counts.into)),
        "x-ratelimit-limit-tokens": str(t_limit),
        "x-ratelimit-remaining-tokens": str(max(t_limit - t_used, 0)),
        "x-ratelimit-reset-tokens": _reset(_until_reset(t_limit, t_used, t_cur, counts.into)),
    }


def _window_full(kind: str, name: str, plan: tuple[int, float, int], key: tuple[int, float, int], into: float, found: dict) -> ApiError:
    """The 429 for a full minute window, naming whose limit binds (the plan's or the key's own)."""
    limit, used, cur = _binding([plan, key])
    whose = "this API key's" if limit == key[0] and limit != plan[0] else "your plan's"
    return ApiError(
        429,
        f"Rate limit reached on {name}: {whose} limit is {limit:,}, used {math.ceil(used):,}. Slow down, or raise the limit.",
        kind,
        "rate_limit_exceeded",
        headers={**found, "Retry-After": str(max(math.ceil(_refill(limit, used, cur, into)), 1))},
    )


class Stale(Exception):
    """The cache entries ``enforce`` was told to expect have changed: nothing was counted."""


def enforce(
    caller,
    plan: Plan,
    request_id: str,
    now: float | None = None,
    peek: tuple[str, ...] = (),
    expect: dict | None = None,
    *,
    touch,
) -> tuple[dict, dict]:
    """Count this call against the plan's and the key's limits.

    Returns the x-ratelimit-* headers and the ``peek`` keys' raw values (when Redis read them),
    or raises a 429, or ``Stale`` (see ``check``'s ``expect``). When the key's "last used" is due
    (once a minute), ``touch(key_id)`` is called: the /v1 pipeline notes it, to write it once the
    answer has left (``touch_key``).
    """
    limits = Limits.of(plan, caller)
    counts = check(caller.user_id, caller.key_id, limits, request_id, time.time() if now is None else now, peek, expect)
    if counts is None:
        if expect:
            raise Stale  # nothing could be checked: let the full path decide
        return {}, {}
    if counts.status == STALE:
        raise Stale
    if counts.touched:
        touch(caller.key_id)
    found = headers(limits, counts)
    ar, kr, at, kt = counts.current
    if counts.status == RPM:
        plan_window, key_window = (limits.rpm, counts.rpm, ar), (limits.key_rpm, counts.key_rpm, kr)
        raise _window_full("requests", "requests per minute (RPM)", plan_window, key_window, counts.into, found)
    if counts.status == TPM:
        plan_window, key_window = (limits.tpm, counts.tpm, at), (limits.key_tpm, counts.key_tpm, kt)
        raise _window_full("tokens", "tokens per minute (TPM)", plan_window, key_window, counts.into, found)
    if counts.status == QUOTA:
        start = month_start()
        days_left = (start.replace(month=start.month % 12 + 1, year=start.year + start.month // 12) - timezone.now()).days + 1
        raise ApiError(
            429,
            f"You have used this month's {plan.monthly_requests:,} requests of the {plan.name} plan. "
            f"Upgrade on the AURA billing page, or wait {days_left} day(s) for the quota to reset.",
            "insufficient_quota",
            "insufficient_quota",
            headers=found,
        )
    if counts.status == CONCURRENCY:
        raise ApiError(
            429,
            f"Too many calls in flight: the {plan.name} plan allows {limits.concurrent} at once. Wait for some to finish.",
            "requests",
            "concurrency_limit_exceeded",
            headers={**found, "Retry-After": "1"},
        )
    return found, counts.peeked
