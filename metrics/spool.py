"""Usage records handed to PostgreSQL in batches, through a list in Redis.

A /v1 call used to INSERT its usage record itself: a PostgreSQL round trip, a pooled connection
and the ORM's per-field preparation on every call, on the request path. With Redis configured,
the call instead appends its record (JSON: counts, money, ids, IP and user agent; never content)
to a Redis list in the pipeline that already settles its rate limits, so it costs no extra round
trip, and a flusher in every web process moves the list into PostgreSQL, up to ``BATCH`` rows per
INSERT. Records reach the table a fraction of a second after their call.

Nothing is lost between the two stores. A flusher *claims* a batch (one Lua script moves it from
the queue to a claim list of its own and notes the claim's time), inserts it, and only then drops
the claim. A flusher that dies mid-batch leaves its claim behind; any flusher puts a claim older
than ``STALE_SECONDS`` back on the queue. A batch inserted twice is harmless: ``request_id`` is
unique and the INSERT skips what is already there. A record whose account was erased in between
is dropped (it could not be inserted); one whose AURA key was deleted keeps no key.

Without Redis (the embedded mode), with ``AURA_USAGE_SPOOL=false``, or when Redis fails at the
moment of the hand-off, the call writes its record itself as before (``services.usage_record``).
"""

import json
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DataError, IntegrityError, connection, transaction

from aura import cache

from .models import UsageRecord
from .services import usage_fields_clean

log = logging.getLogger(__name__)

BATCH = 500
STALE_SECONDS = 60
IDLE_SECONDS = 0.2  # a flusher's pause when the queue is empty

# KEYS: queue, claims (zset: claim list -> time claimed), this claim list. ARGV: how many, now.
_CLAIM = """
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if not items then return {} end
redis.call('RPUSH', KEYS[3], unpack(items))
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[3])
return items
"""

# KEYS: queue, claims, a claim list: its records go back on the queue at once (its INSERT failed).
_RETURN = """
local items = redis.call('LRANGE', KEYS[3], 0, -1)
if #items > 0 then redis.call('LPUSH', KEYS[1], unpack(items)) end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[2], KEYS[3])
return #items
"""

# KEYS: queue, claims. ARGV: claimed before this time is stale. Returns how many claims came back.
_RECOVER = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, claim in ipairs(stale) do
  local items = redis.call('LRANGE', claim, 0, -1)
  if #items > 0 then redis.call('RPUSH', KEYS[1], unpack(items)) end
  redis.call('DEL', claim)
  redis.call('ZREM', KEYS[2], claim)
end
return #stale
"""

_FIELDS = [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]


def enabled() -> bool:
    """Whether calls hand their records to the spool (Redis and PostgreSQL, and not switched off)."""
    # The engine's name, not ``connection.vendor``: under gevent, asking a greenlet's connection built
    # one for it, on every call (1% of a streamed call's CPU, py-spy).
    engine = settings.DATABASES["default"]["ENGINE"]
    return settings.AURA_USAGE_SPOOL and engine.endswith("postgresql") and cache.redis() is not None


# Fixed names, outside the cache's key prefix and version: a cache version bump must not orphan
# records. Redis must not evict them either: run it with maxmemory-policy noeviction or volatile-*
# (every cache entry has a TTL; these lists have none).
QUEUE = "aura:usage:spool"
CLAIMS = "aura:usage:spool:claims"
REFUSED = "aura:usage:spool:refused"  # records PostgreSQL refused, kept for an operator


def _json(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


_ABSENT = object()
_ENCODER = json.JSONEncoder(default=_json, separators=(",", ":"))


def encode(fields: dict) -> bytes:
    """One record as the spool holds it: its model fields by column name, JSON."""
    fields = usage_fields_clean(fields)
    row = {}
    for field in _FIELDS:
        value = fields.get(field.attname, _ABSENT)
        if value is _ABSENT:
            value = fields.get(field.name, _ABSENT)
        row[field.column] = field.get_default() if value is _ABSENT else value
    return _ENCODER.encode(row).encode()


def push(pipe, records: list[bytes]) -> None:
    """Add the records to a Redis pipeline the caller executes."""
    pipe.rpush(QUEUE, *records)


def hand_off(records: list[bytes]) -> bool:
    """Queue records in a round trip of their own; False when Redis would not take them."""
    client = cache.redis()
    if client is None:
        return False

    def run():
        client.rpush(QUEUE, *records)
        return True

    return cache.guarded("usage spool", run, False)


def insert(records: list[bytes]) -> int:
    """INSERT the records, skipping those already there and those of erased accounts; rows added."""
    quote = connection.ops.quote_name
    columns = [quote(f.column) for f in _FIELDS]
    user_table = quote(get_user_model()._meta.db_table)
    key_table = quote(UsageRecord._meta.get_field("api_key").related_model._meta.db_table)
    # A record whose key was deleted meanwhile keeps no key (the column's ON DELETE SET NULL).
    key_or_null = f"CASE WHEN EXISTS (SELECT 1 FROM {key_table} k WHERE k.id = r.api_key_id) THEN r.api_key_id END"  # noqa: S608 -- model names
    chosen = [key_or_null if c == quote("api_key_id") else f"r.{c}" for c in columns]
    sql = (
        f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 -- names from the models; the rows are one parameter
        f"SELECT {', '.join(chosen)} FROM json_populate_recordset(NULL::{quote(UsageRecord._meta.db_table)}, %s::json) AS r "
        f"WHERE EXISTS (SELECT 1 FROM {user_table} u WHERE u.id = r.user_id) "
        f"ON CONFLICT ({quote('request_id')}) DO NOTHING"
    )
    rows = b"[" + b",".join(records) + b"]"
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows.decode()])
        return cursor.rowcount


def drain(limit: int = BATCH) -> int:
    """Move one batch from the queue into PostgreSQL; rows inserted (0 when the queue was empty)."""
    return _drain_batch(limit)[1]


def _drain_batch(limit: int) -> tuple[int, int]:
    """(records claimed, rows inserted) for one batch."""
    client = cache.redis()
    if client is None:
        return 0, 0
    claim = f"{QUEUE}:claim:{secrets.token_hex(8)}"
    records = client.eval(_CLAIM, 3, QUEUE, CLAIMS, claim, limit, time.time())
    if not records:
        return 0, 0
    try:
        try:
            with transaction.atomic():  # a savepoint when inside a transaction already
                inserted = insert(records)
        except (DataError, IntegrityError):
            inserted = _insert_each(client, records)
    except Exception:
        client.eval(_RETURN, 3, QUEUE, CLAIMS, claim)  # PostgreSQL away: back on the queue now, not in a minute
        raise
    pipe = client.pipeline(transaction=False)
    pipe.delete(claim)
    pipe.zrem(CLAIMS, claim)
    pipe.execute()
    return len(records), max(inserted, 0)


def _insert_each(client, records: list[bytes]) -> int:
    """A batch PostgreSQL refused as data: one by one, so that one bad record cannot hold up the
    queue for ever. A record refused on its own moves to the REFUSED list, named in the log."""
    inserted = 0
    for record in records:
        try:
            with transaction.atomic():
                inserted += insert([record])
        except (DataError, IntegrityError) as error:
            client.rpush(REFUSED, record)
            try:
                request_id = json.loads(record).get("request_id")
            except ValueError:
                request_id = None
            log.error("usage record %s refused by PostgreSQL (%s); kept in Redis list %s", request_id, type(error).__name__, REFUSED)
    return inserted


def purge_refused(*, older_than: datetime | None = None, user_ids=()) -> int:
    """Drop refused records made before ``older_than`` (or with no readable time), or belonging to
    ``user_ids``: they hold an IP address and a user agent, which live no longer than the raw
    usage records (the retention jobs call this) and go with an erased account."""
    client = cache.redis()
    if client is None:
        return 0
    erased = {int(user_id) for user_id in user_ids}

    def run():
        removed = 0
        for record in client.lrange(REFUSED, 0, -1):
            made, owner = _made_and_owner(record)
            if (older_than is not None and (made is None or made < older_than)) or owner in erased:
                removed += client.lrem(REFUSED, 1, record)
        return removed

    return cache.guarded("usage spool", run, 0)


def _made_and_owner(record: bytes) -> tuple[datetime | None, int | None]:
    """A refused record's time (aware) and account id, as far as they can be read."""
    try:
        fields = json.loads(record)
        made = datetime.fromisoformat(fields["created"])
        owner = fields.get("user_id")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, None
    return (made if made.tzinfo else made.replace(tzinfo=UTC)), (owner if isinstance(owner, int) else None)


def recover(stale_seconds: float = STALE_SECONDS) -> int:
    """Put the batches of flushers that died mid-way back on the queue; claims recovered."""
    client = cache.redis()
    if client is None:
        return 0
    return int(client.eval(_RECOVER, 2, QUEUE, CLAIMS, time.time() - stale_seconds))


def pending() -> int:
    """Records waiting in the queue (claimed batches not included)."""
    client = cache.redis()
    return int(client.llen(QUEUE)) if client is not None else 0


def drain_all(seconds: float = 40.0) -> int:
    """Drain until the queue is empty, for at most ``seconds`` (the beat's safety net, tests); rows inserted."""
    deadline = time.monotonic() + seconds
    total = 0
    recover()
    while time.monotonic() < deadline:
        claimed, inserted = _drain_batch(BATCH)
        total += inserted
        if not claimed:
            break
    return total


class Flusher(threading.Thread):
    """Drains the spool for as long as the process lives (a greenlet under gunicorn's gevent workers)."""

    def __init__(self):
        super().__init__(name="usage-spool", daemon=True)

    def run(self) -> None:
        last_recovery = 0.0
        failures = 0
        while True:
            claimed = 0
            try:
                if time.monotonic() - last_recovery > STALE_SECONDS / 2:
                    recover()
                    last_recovery = time.monotonic()
                claimed, _inserted = _drain_batch(BATCH)
                failures = 0
            except Exception as error:  # PostgreSQL or Redis away: the records wait in Redis
                failures += 1
                if failures == 1 or failures % 300 == 0:
                    log.warning("usage spool not drained (%s); retrying", type(error).__name__)
            try:
                connection.close()  # back to the pool between batches
            except Exception as error:
                log.warning("usage spool: closing its database connection failed (%s)", type(error).__name__)
            if claimed < BATCH:
                time.sleep(IDLE_SECONDS if not failures else min(IDLE_SECONDS * 2**failures, 5.0))


_flusher: Flusher | None = None
_flusher_lock = threading.Lock()


def start_flusher() -> bool:
    """Start this process's flusher once, when the spool is in use; whether one runs."""
    global _flusher
    if not enabled():
        return False
    with _flusher_lock:
        if _flusher is None or not _flusher.is_alive():
            _flusher = Flusher()
            _flusher.start()
    return True
