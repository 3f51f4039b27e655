"""The charts page: ranges, filters, series, and what bad query parameters get."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from metrics import services
from metrics.models import RollupWatermark, UsageRecord

from .conftest import hour_now, record


def chart(response, name):
    return next(c for c in response.context["chart_data"]["charts"] if c["id"] == name)


def series(response, name, label):
    return next(d["data"] for d in chart(response, name)["datasets"] if d["label"] == label)


@pytest.fixture
def seeded(alice, alice_api_key):
    now = hour_now()
    record(alice, key=alice_api_key, at=now, latency_ms=100)
    record(alice, key=alice_api_key, at=now, model="claude-haiku-4-5", provider="anthropic", cache_status="hit")
    record(alice, at=now - timedelta(days=2), status=429, error_class="rate_limit_exceeded", route_reason="fallback:rate_limited")
    record(alice, at=now - timedelta(days=40))
    return alice


def test_the_default_range_is_the_last_30_days(alice_client, seeded):
    response = alice_client.get("/dashboard/charts/")
    assert response.status_code == 200 and response.context["range_name"] == "30d"
    assert len(chart(response, "cost")["labels"]) == 30
    assert sum(series(response, "requests", "Requests")) == 3


@pytest.mark.parametrize(("name", "buckets"), [("24h", 24), ("7d", 168), ("30d", 30), ("90d", 90)])
def test_each_range_has_its_buckets(alice_client, seeded, name, buckets):
    response = alice_client.get(f"/dashboard/charts/?range={name}")
    assert len(chart(response, "requests")["labels"]) == buckets


def test_custom_dates_are_whole_days(alice_client, seeded):
    day = (hour_now() - timedelta(days=2)).date()
    response = alice_client.get(f"/dashboard/charts/?range=custom&from={day}&to={day}")
    assert len(chart(response, "requests")["labels"]) == 24  # one day: hourly
    assert sum(series(response, "requests", "Errors")) == 1


def test_every_series_matches_the_records(alice_client, seeded):
    response = alice_client.get("/dashboard/charts/?range=7d")
    assert series(response, "cost", "Cost")[-1] == 0.002 and series(response, "cost", "Baseline (without AURA)")[-1] == 0.006
    assert series(response, "requests", "Requests")[-1] == 2 and sum(series(response, "requests", "Fallbacks")) == 1
    assert series(response, "tokens", "Input")[-1] == 160 and series(response, "tokens", "Cached input")[-1] == 40
    assert series(response, "tokens", "Output")[-1] == 100
    assert series(response, "cache", "Response cache hits")[-1] == 0.5
    assert 80 <= series(response, "latency", "p50")[-1] <= 113  # the 100 ms call's bucket
    assert chart(response, "models")["labels"] == ["gpt-4o-mini", "claude-haiku-4-5"]
    assert chart(response, "routing")["labels"] == ["explicit", "fallback:rate_limited"]


def test_rolled_up_and_raw_give_the_same_series(alice_client, seeded):
    before = alice_client.get("/dashboard/charts/?range=90d").context["chart_data"]
    for moment in set(UsageRecord.objects.values_list("created", flat=True)):
        services.rollup_hour(hour=moment, backfill=True)
        services.rollup_day(day=moment.date())
    RollupWatermark.objects.create(until=timezone.now())
    UsageRecord.objects.filter(created__lt=hour_now()).delete()  # only the live hour is read raw now
    assert alice_client.get("/dashboard/charts/?range=90d").context["chart_data"] == before


def test_every_chart_has_a_table_of_the_same_numbers(alice_client, seeded):
    page = alice_client.get("/dashboard/charts/?range=7d").content.decode()
    assert page.count("<details") == 7 and page.count("<canvas") == 7
    assert '<td class="num">$0.0020</td><td class="num">$0.0060</td>' in page


@pytest.mark.parametrize(
    ("name", "value", "count"), [("key", "alice_api_key", 2), ("model", "claude-haiku-4-5", 1), ("provider", "openai", 2)]
)
def test_filters_narrow_every_chart(alice_client, seeded, alice_api_key, name, value, count):
    value = alice_api_key.pk if value == "alice_api_key" else value
    response = alice_client.get(f"/dashboard/charts/?range=7d&{name}={value}")
    assert response.status_code == 200
    assert sum(series(response, "requests", "Requests")) == count


@pytest.mark.parametrize(
    "query",
    [
        "range=forever",
        "range=custom",
        "range=custom&from=2026-13-45&to=2026-01-01",
        "from=yesterday",
        "from=2026-03-10&to=2026-03-01",
        "from=1900-01-01&to=1900-01-02",
        "from=99999-01-01",
        "key=abc",
        "key=-1",
        "model=not-a-model-of-mine",
        "provider=%00",
    ],
)
def test_bad_parameters_are_a_400_showing_the_default_range(alice_client, seeded, query):
    response = alice_client.get(f"/dashboard/charts/?{query}")
    assert response.status_code == 400
    assert response.context["range_name"] == "30d"
    assert "Some filters could not be read" in response.content.decode()


def test_unknown_parameters_are_ignored(alice_client, seeded):
    assert alice_client.get("/dashboard/charts/?utm_source=mail&range=24h").status_code == 200


def test_another_accounts_key_is_a_404(alice_client, seeded, bob_api_key):
    assert alice_client.get(f"/dashboard/charts/?key={bob_api_key.pk}").status_code == 404
    assert alice_client.get("/dashboard/charts/?key=999999").status_code == 404


def test_bob_sees_none_of_alices_usage(client, seeded, bob):
    bob.language = "en"  # the series are looked up by their English names
    bob.save(update_fields=["language"])
    client.force_login(bob)
    response = client.get("/dashboard/charts/?range=90d")
    assert sum(series(response, "requests", "Requests")) == 0


def test_the_page_speaks_the_users_language(client, seeded, alice):
    alice.language = "ru"
    alice.save(update_fields=["language"])
    client.force_login(alice)
    response = client.get("/dashboard/charts/", HTTP_ACCEPT_LANGUAGE="en")  # the account's language wins
    assert response.status_code == 200 and '<html lang="ru"' in response.content.decode()


def test_a_bad_range_keeps_what_was_typed_and_marks_the_field(alice_client, seeded):
    start, end = hour_now().date(), hour_now().date() - timedelta(days=19)
    response = alice_client.get(f"/dashboard/charts/?range=custom&from={start}&to={end}")
    assert response.status_code == 400 and response.context["range_name"] == "30d"  # the default view underneath
    page = response.content.decode()
    assert '<option value="custom" selected>' in page
    assert f'value="{start}"' in page
    assert re.search(rf'<input[^>]*name="to"[^>]*value="{end}"[^>]*aria-invalid="true"[^>]*aria-describedby="id_to_error"', page)
    assert re.search(r'id="id_to_error"><p class="field-error">The end date is before the start date.</p>', page)
