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
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from aura import cache

from .models import UsageRecord

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
    return settings.AURA_USAGE_SPOOL and connection.vendor == "postgresql" and cache.redis() is not None


def queue_key() -> str:
    return cache.raw_key("usage:spool")


def _claims_key() -> str:
    return cache.raw_key("usage:spool:claims")


def _json(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def encode(fields: dict) -> bytes:
    """One record as the spool holds it: its model fields by column name, JSON."""
    row = {}
    for field in _FIELDS:
        if field.attname in fields:
            row[field.column] = fields[field.attname]
        elif field.name in fields:
            row[field.column] = fields[field.name]
        else:
            row[field.column] = field.get_default()
    return json.dumps(row, default=_json, separators=(",", ":")).encode()


def push(pipe, records: list[bytes]) -> None:
    """Add the records to a Redis pipeline the caller executes."""
    pipe.rpush(queue_key(), *records)


def hand_off(records: list[bytes]) -> bool:
    """Queue records in a round trip of their own; False when Redis would not take them."""
    client = cache.redis()
    if client is None:
        return False

    def run():
        client.rpush(queue_key(), *records)
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
    client = cache.redis()
    if client is None:
        return 0
    claim = cache.raw_key(f"usage:spool:claim:{secrets.token_hex(8)}")
    records = client.eval(_CLAIM, 3, queue_key(), _claims_key(), claim, limit, time.time())
    if not records:
        return 0
    inserted = insert(records)
    pipe = client.pipeline(transaction=False)
    pipe.delete(claim)
    pipe.zrem(_claims_key(), claim)
    pipe.execute()
    return max(inserted, 0)


def recover(stale_seconds: float = STALE_SECONDS) -> int:
    """Put the batches of flushers that died mid-way back on the queue; claims recovered."""
    client = cache.redis()
    if client is None:
        return 0
    return int(client.eval(_RECOVER, 2, queue_key(), _claims_key(), time.time() - stale_seconds))


def pending() -> int:
    """Records waiting in the queue (claimed batches not included)."""
    client = cache.redis()
    return int(client.llen(queue_key())) if client is not None else 0


def drain_all() -> int:
    """Drain until the queue is empty (the beat's safety net, tests and the benchmark)."""
    total = 0
    recover()
    while True:
        moved = drain()
        if not moved and not pending():
            return total
        total += moved


class Flusher(threading.Thread):
    """Drains the spool for as long as the process lives (a greenlet under gunicorn's gevent workers)."""

    def __init__(self):
        super().__init__(name="usage-spool", daemon=True)

    def run(self) -> None:
        last_recovery = 0.0
        failures = 0
        while True:
            try:
                if time.monotonic() - last_recovery > STALE_SECONDS / 2:
                    recover()
                    last_recovery = time.monotonic()
                moved = drain()
                failures = 0
            except Exception as error:  # PostgreSQL or Redis away: the records wait in Redis
                moved = 0
                failures += 1
                if failures == 1 or failures % 300 == 0:
                    log.warning("usage spool not drained (%s); retrying", type(error).__name__)
            finally:
                connection.close()  # back to the pool between batches
            if moved < BATCH:
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
