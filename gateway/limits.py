"""The plan's limits, enforced on every /v1 call with atomic counters in the shared cache.

- Requests per minute: a sliding window (this minute's count plus the previous
  minute's, weighted by how much of it still overlaps), so a burst at a minute's
  boundary cannot double the limit.
- Requests per month: one counter per account and calendar month (UTC), seeded
  from the usage records the first time it is needed.

Every web node shares the counters. If Redis is down, authenticated calls go
through (fail open, logged by ``aura.cache``) rather than fail for everyone.
"""

import math
import time

from django.utils import timezone

from aura import cache
from billing.plans import Plan
from metrics.selectors import month_start, month_totals

from .errors import ApiError


def _reset(seconds: float) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: 1s, 6m0s, 20ms."""
    if seconds < 1:
        return f"{max(int(seconds * 1000), 1)}ms"
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _per_minute(user_id: int, plan: Plan, now: float) -> dict:
    minute, into = divmod(now, 60)
    current = cache.incr(f"gw:rpm:{user_id}:{int(minute)}", 120)
    if current is None:
        return {}
    previous = cache.get(f"gw:rpm:{user_id}:{int(minute) - 1}") or 0
    used = previous * (1 - into / 60) + current
    limit = plan.requests_per_minute
    headers = {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(limit - math.ceil(used), 0)),
        "x-ratelimit-reset-requests": _reset((used - limit + 1) / limit * 60 if used >= limit else 60 / limit),
    }
    if used > limit:
        raise ApiError(
            429,
            f"Rate limit reached on requests per minute (RPM): limit {limit}, used {math.ceil(used)}. Slow down, or move to a larger plan.",
            "requests",
            "rate_limit_exceeded",
            headers={**headers, "Retry-After": str(max(int(math.ceil((used - limit) / limit * 60)), 1))},
        )
    return headers


def _per_month(user_id: int, plan: Plan) -> None:
    start = month_start()
    key = f"gw:quota:{user_id}:{start:%Y%m}"
    if cache.get(key) is None:
        # Seeded from the rollups, which outlive the 14-day raw records: a counter lost late in the month stays right.
        cache.add(key, month_totals(user_id)["client_requests"], 40 * 86400)
    used = cache.incr(key, 40 * 86400)
    if used is not None and used > plan.monthly_requests:
        days_left = (start.replace(month=start.month % 12 + 1, year=start.year + start.month // 12) - timezone.now()).days + 1
        raise ApiError(
            429,
            f"You have used this month's {plan.monthly_requests:,} requests of the {plan.name} plan. "
            f"Upgrade on the AURA billing page, or wait {days_left} day(s) for the quota to reset.",
            "insufficient_quota",
            "insufficient_quota",
        )


def enforce(user_id: int, plan: Plan) -> dict:
    """Count this call against the plan; return the x-ratelimit-* headers or raise a 429."""
    headers = _per_minute(user_id, plan, time.time())
    _per_month(user_id, plan)
    return headers
