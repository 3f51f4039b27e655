import itertools
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from gateway import services as gateway_services
from metrics.models import HourlyRollup, UsageRecord

_ids = itertools.count(1)


def hour_now():
    return timezone.now().replace(minute=0, second=0, microsecond=0)


def record(user, *, at=None, key=None, model="gpt-4o-mini", provider="openai", status=200, **fields) -> UsageRecord:
    """One usage record as the gateway writes it, with sensible numbers unless told otherwise."""
    values = {
        "prompt_tokens": 100,
        "cached_tokens": 20,
        "completion_tokens": 50,
        "tokens_original": 120,
        "tokens_sent": 100,
        "latency_ms": 300,
        "cost_usd": Decimal("0.0010"),
        "baseline_cost_usd": Decimal("0.0030"),
        "savings_compression_usd": Decimal("0.0005"),
        "savings_routing_usd": Decimal("0.0015"),
        "route_reason": "explicit",
        "cache_status": "miss",
        "ip": "203.0.113.7",
        **fields,
    }
    return UsageRecord.objects.create(
        request_id=fields.pop("request_id", None) or f"req_{next(_ids):08d}",
        user=user,
        api_key=key,
        created=at or timezone.now(),
        model_requested=model,
        model_used=model,
        provider=provider,
        status=status,
        **{k: v for k, v in values.items() if k != "request_id"},
    )


def history(user, *, hours, requests=10, cost="0.01", errors=0, days=14):
    """Hourly rollups for the same hours of the previous ``days`` days: an account's usual traffic."""
    rows = [
        HourlyRollup(user=user, hour=hour - timedelta(days=day), requests=requests, errors=errors, cost_usd=Decimal(cost))
        for hour in hours
        for day in range(1, days + 1)
    ]
    HourlyRollup.objects.bulk_create(rows)


@pytest.fixture
def alice_api_key(alice):
    key, _secret = gateway_services.api_key_issue(user=alice, name="backend")
    return key


@pytest.fixture
def bob_api_key(bob):
    key, _secret = gateway_services.api_key_issue(user=bob, name="bobs")
    return key
