"""Read-side queries over usage."""

from datetime import datetime

from django.db.models import Count, Sum
from django.utils import timezone

from .models import UsageRecord

_MONEY = (
    "cost_usd",
    "baseline_cost_usd",
    "savings_compression_usd",
    "savings_cache_usd",
    "savings_provider_cache_usd",
    "savings_routing_usd",
)


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_totals(user_id: int) -> dict:
    """This calendar month's requests, tokens, spend and savings by mechanism (UTC)."""
    rows = UsageRecord.objects.filter(user_id=user_id, created__gte=month_start()).aggregate(
        requests=Count("id"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        **{name: Sum(name) for name in _MONEY},
    )
    totals = {name: rows[name] or 0 for name in ("requests", "prompt_tokens", "completion_tokens")}
    money = {name: float(rows[name] or 0) for name in _MONEY}
    return {
        **totals,
        "spend_usd": round(money["cost_usd"], 6),
        "baseline_usd": round(money["baseline_cost_usd"], 6),
        "savings_usd": {
            "total": round(money["baseline_cost_usd"] - money["cost_usd"], 6),
            "compression": round(money["savings_compression_usd"], 6),
            "response_cache": round(money["savings_cache_usd"], 6),
            "provider_cache": round(money["savings_provider_cache_usd"], 6),
            "routing": round(money["savings_routing_usd"], 6),
        },
    }
