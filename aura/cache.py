"""The shared cache, used so that its failure never fails a request.

Every call gives up quietly when Redis is down or frozen: short socket timeouts
bound the first wait, then the cache is skipped for a few seconds so a dead
Redis costs one timeout, not one per operation. One log line a minute.
"""

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)

SKIP_SECONDS = 5
_down_until = 0.0
_last_log = 0.0


def _guarded(operation: str, call, default):
    global _down_until, _last_log
    now = time.monotonic()
    if now < _down_until:
        return default
    try:
        return call()
    except Exception as error:
        _down_until = now + SKIP_SECONDS
        if now - _last_log > 60:
            _last_log = now
            log.warning("shared cache unavailable (%s during %s); going on without it", type(error).__name__, operation)
        return default


def get(key: str, default=None):
    return _guarded("get", lambda: cache.get(key, default), default)


def set(key: str, value, timeout: int) -> None:  # noqa: A001 (mirrors the cache API)
    _guarded("set", lambda: cache.set(key, value, timeout), None)


def add(key: str, value, timeout: int) -> bool:
    return _guarded("add", lambda: cache.add(key, value, timeout), False)


def delete(key: str) -> None:
    _guarded("delete", lambda: cache.delete(key), None)


def incr(key: str, timeout: int) -> int | None:
    """Atomically count within a window that starts with the first hit."""

    def count():
        cache.add(key, 0, timeout)
        return cache.incr(key)

    return _guarded("incr", count, None)


def reset() -> None:
    """Forget a past failure (tests, and after an operator fixes Redis)."""
    global _down_until
    _down_until = 0.0
