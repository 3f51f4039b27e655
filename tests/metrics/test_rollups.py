"""Hourly and daily rollups against the raw records they come from."""

from datetime import timedelta
from decimal import Decimal

import pytest

from metrics import selectors, services
from metrics.aggregate import percentile
from metrics.models import DailyRollup, HourlyRollup, UsageRecord

from .conftest import hour_now, record


def rows(model=HourlyRollup):
    return sorted(model.objects.values_list("user_id", "api_key_id", "model_used", "provider", "requests", "cost_usd"))


def test_an_hour_rolls_up_to_the_sums_of_its_records(alice, alice_api_key):
    hour = hour_now() - timedelta(hours=1)
    record(alice, key=alice_api_key, at=hour + timedelta(minutes=5), latency_ms=90)
    record(alice, key=alice_api_key, at=hour + timedelta(minutes=50), latency_ms=2000, cache_status="hit")
    record(alice, key=alice_api_key, at=hour + timedelta(minutes=59), model="claude-haiku-4-5", provider="anthropic")
    record(alice, key=alice_api_key, at=hour + timedelta(minutes=61))  # the next hour
    services.rollup_hour(hour=hour)
    openai = HourlyRollup.objects.get(model_used="gpt-4o-mini")
    assert (openai.requests, openai.prompt_tokens, openai.cached_tokens, openai.completion_tokens) == (2, 200, 40, 100)
    assert (openai.tokens_original, openai.tokens_sent, openai.tokens_saved, openai.cache_hits) == (240, 200, 40, 1)
    assert openai.cost_usd == Decimal("0.002") and openai.baseline_cost_usd == Decimal("0.006")
    assert openai.savings_compression_usd == Decimal("0.001") and openai.savings_routing_usd == Decimal("0.003")
    assert sum(openai.latency_histogram) == 2 and openai.hour == hour
    assert HourlyRollup.objects.get(model_used="claude-haiku-4-5").requests == 1


def test_errors_fallbacks_and_route_reasons_are_counted(alice):
    hour = hour_now() - timedelta(hours=1)
    record(alice, at=hour, status=502, error_class="upstream_error", request_id="req_a-1")
    record(alice, at=hour, route_reason="fallback:upstream_error", request_id="req_a")
    record(alice, at=hour, status=429, error_class="rate_limit_exceeded")
    record(alice, at=hour, status=400, error_class="")
    services.rollup_hour(hour=hour)
    rollup = HourlyRollup.objects.get()
    assert (rollup.requests, rollup.errors, rollup.fallbacks, rollup.failed_attempts) == (4, 3, 1, 1)
    assert rollup.errors_by_class == {"upstream_error": 1, "rate_limit_exceeded": 1, "other": 1}
    assert rollup.route_reasons == {"explicit": 3, "fallback:upstream_error": 1}


def test_rolling_up_again_gives_the_same_rows(alice, bob):
    hour = hour_now() - timedelta(hours=2)
    for minute in range(0, 60, 7):
        record(alice if minute % 2 else bob, at=hour + timedelta(minutes=minute))
    services.rollup_hour(hour=hour)
    first = rows()
    services.rollup_hour(hour=hour)
    services.rollup_hour(hour=hour)
    assert rows() == first and HourlyRollup.objects.count() == 2


def test_a_late_record_is_folded_in_by_the_next_run(alice):
    now = hour_now() + timedelta(minutes=30)
    record(alice, at=now - timedelta(hours=2))
    services.rollups_refresh(now=now)
    assert selectors.totals(alice.pk, now - timedelta(hours=3), now).requests == 1
    record(alice, at=now - timedelta(hours=2))  # written after its hour was rolled up
    services.rollups_refresh(now=now)
    assert HourlyRollup.objects.get().requests == 2
    assert DailyRollup.objects.get(day=(now - timedelta(hours=2)).date()).requests == 2


def test_daily_rollups_add_up_their_hours(alice, alice_api_key):
    day = hour_now().replace(hour=0) - timedelta(days=1)
    for hour in (1, 5, 23):
        record(alice, key=alice_api_key, at=day + timedelta(hours=hour, minutes=3), latency_ms=50 * hour)
    services.rollup_range(start=day, end=day + timedelta(days=1))
    daily = DailyRollup.objects.get()
    assert daily.day == day.date() and daily.requests == 3 and daily.cost_usd == Decimal("0.003")
    assert daily.latency_histogram == [sum(h) for h in zip(*HourlyRollup.objects.values_list("latency_histogram", flat=True), strict=True)]


def test_percentiles_come_from_merged_histograms_not_averages(alice):
    hour = hour_now() - timedelta(hours=3)
    for latency in [100] * 9 + [9000]:
        record(alice, at=hour, latency_ms=latency)
    for latency in [100] * 10:
        record(alice, at=hour + timedelta(hours=1), latency_ms=latency)
    services.rollup_range(start=hour, end=hour + timedelta(hours=2))
    merged = selectors.totals(alice.pk, hour, hour + timedelta(hours=2), daily=False)
    assert 80 <= merged.latency_p50 <= 113  # both hours' medians are in the 80-113 ms bucket
    assert 80 <= merged.latency_p95 <= 113  # 1 slow call in 20 is the 95th percentile's edge, not above it
    assert percentile([0] * 14 + [1] + [0] * 14, 0.5) == 905 + (1280 - 905) * 0.5


def test_live_numbers_match_whatever_is_rolled_up(alice):
    now = hour_now() + timedelta(minutes=20)
    for hours_ago in (30, 5, 0):
        record(alice, at=now - timedelta(hours=hours_ago))
    raw = selectors.totals(alice.pk, now - timedelta(days=2), now + timedelta(hours=1))
    services.rollup_range(start=now - timedelta(days=2), end=now)
    record(alice, at=now)  # after the rollup: read live from the raw records
    rolled = selectors.totals(alice.pk, now - timedelta(days=2), now + timedelta(hours=1))
    assert (raw.requests, rolled.requests) == (3, 4)
    assert rolled.cost_usd == raw.cost_usd + Decimal("0.001")


def test_rollups_outlive_the_raw_records(alice_client, alice):
    now = hour_now()
    record(alice, at=now - timedelta(hours=3))
    services.rollups_refresh(now=now + timedelta(minutes=1))
    UsageRecord.objects.all().delete()  # as the 14-day retention job does
    assert selectors.totals(alice.pk, now - timedelta(days=1), now + timedelta(hours=1)).requests == 1
    assert selectors.has_usage(alice.pk)


def test_hours_older_than_the_raw_records_life_are_refused(alice):
    with pytest.raises(services.RollupWindowClosed):
        services.rollup_hour(hour=hour_now() - timedelta(days=15))
    services.rollup_hour(hour=hour_now() - timedelta(days=15), backfill=True)


def test_a_refresh_after_an_outage_catches_up_in_batches(alice):
    now = hour_now()
    services.rollups_refresh(now=now - timedelta(hours=80))  # the last run before the outage
    record(alice, at=now - timedelta(hours=60))
    assert services.rollups_refresh(now=now) is True  # 48 hours done, more to do
    assert services.rollups_refresh(now=now) is False
    assert HourlyRollup.objects.get().requests == 1
    assert selectors.watermark() > now - timedelta(hours=1)


def test_an_account_with_several_keys_can_be_erased(alice, alice_api_key):
    from gateway import services as gateway_services

    other, _secret = gateway_services.api_key_issue(user=alice, name="other")
    hour = hour_now() - timedelta(hours=1)
    record(alice, key=alice_api_key, at=hour)
    record(alice, key=other, at=hour)
    services.rollup_range(start=hour, end=hour + timedelta(hours=1))
    alice.delete()
    assert not HourlyRollup.objects.exists() and not DailyRollup.objects.exists()


def test_two_rollups_of_one_hour_at_once_leave_one_set_of_rows(transactional_db, alice, bob):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    hour = hour_now() - timedelta(hours=1)
    for minute in range(0, 60, 5):
        record(alice if minute % 2 else bob, at=hour + timedelta(minutes=minute))

    def roll(_):
        try:
            services.rollup_hour(hour=hour)
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(roll, range(8)))
    assert sorted(HourlyRollup.objects.values_list("user_id", "requests")) == sorted([(alice.pk, 6), (bob.pk, 6)])
