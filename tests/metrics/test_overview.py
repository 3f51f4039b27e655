"""The overview: this month's cards, each against the period of the same length before it."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from metrics import selectors, services
from metrics.anonymous import fold_days
from metrics.models import AnonymousAggregate
from metrics.selectors import month_start

from .conftest import hour_now, record


def cards(response):
    return {card["key"]: card for card in response.context["cards"]}


def seed(alice, key):
    """Two calls this month and one in the period before it."""
    now = hour_now()
    record(alice, key=key, at=now, latency_ms=100, cache_status="hit")
    record(alice, key=key, at=now, status=502, error_class="upstream_error", latency_ms=2000, cost_usd=Decimal("0.003"))
    record(alice, key=key, at=month_start(now) - timedelta(minutes=30), cost_usd=Decimal("0.002"))


def test_a_new_account_sees_how_to_get_started(alice_client):
    page = alice_client.get("/dashboard/").content.decode()
    assert "Get started" in page and "Welcome, Alice" in page and "dashboard-data" not in page
    assert 'api_key="aura_…")' in page  # the prefix real keys have


def test_every_card_shows_this_months_numbers(alice_client, alice, alice_api_key):
    seed(alice, alice_api_key)
    shown = cards(alice_client.get("/dashboard/"))
    assert shown["spend"]["value"] == "$0.0040"
    assert shown["savings"]["value"] == "$0.0020" and "33.3% of what it would have cost" in shown["savings"]["note"]
    assert shown["requests"]["value"] == "2"
    assert shown["tokens"]["value"] == "300"
    assert shown["cache_hit_rate"]["value"] == "50.0%" and "20.0% of input tokens" in shown["cache_hit_rate"]["note"]
    assert shown["compression"]["value"] == "83.3%"
    assert shown["error_rate"]["value"] == "50.0%"
    assert shown["latency_p95"]["value"] == "2,485 ms"  # 90% into the 1810-2560 ms bucket


def test_cards_show_the_change_from_the_previous_period(alice_client, alice, alice_api_key):
    seed(alice, alice_api_key)
    shown = cards(alice_client.get("/dashboard/"))
    assert shown["spend"]["change"]["text"] == "+100%"  # $0.004 against $0.002
    assert shown["requests"]["change"]["text"] == "+100%"
    assert shown["error_rate"]["change"]["text"] == "+50.0 pts" and shown["error_rate"]["tone"] == "bad"
    assert shown["savings"]["tone"] == "good"


def test_the_month_is_read_from_rollups_and_the_live_hour(alice_client, alice, alice_api_key):
    seed(alice, alice_api_key)
    services.rollups_refresh(now=hour_now() + timedelta(minutes=1))
    record(alice, key=alice_api_key, at=hour_now() + timedelta(minutes=2))  # not rolled up yet
    assert cards(alice_client.get("/dashboard/"))["requests"]["value"] == "3"


def test_the_cost_chart_and_its_table_cover_the_month(alice_client, alice, alice_api_key):
    seed(alice, alice_api_key)
    response = alice_client.get("/dashboard/")
    chart = response.context["chart_data"]["charts"][0]
    assert chart["id"] == "cost" and len(chart["labels"]) == hour_now().day
    assert chart["datasets"][0]["data"][-1] == 0.004 and chart["datasets"][1]["data"][-1] == 0.006
    page = response.content.decode()
    assert 'id="dashboard-data" type="application/json"' in page and "<details" in page


def test_problems_are_listed(alice_client, alice, alice_api_key):
    seed(alice, alice_api_key)
    page = alice_client.get("/dashboard/").content.decode()
    assert "upstream_error: 1 failed call this month" in page


def test_another_accounts_usage_is_not_counted(alice_client, alice, bob, alice_api_key):
    seed(alice, alice_api_key)
    record(bob, at=hour_now())
    assert cards(alice_client.get("/dashboard/"))["requests"]["value"] == "2"


def test_the_overview_needs_a_login(client):
    assert client.get("/dashboard/").status_code == 302


def test_a_client_that_left_is_not_an_error_of_aura_or_its_provider(alice, alice_api_key):
    """A 499 client_disconnected was the caller's choice: it counts as a call, not as an error, in the
    account's totals (error rate, spike alerts) and in the anonymous statistics routing reads."""
    yesterday = timezone.now() - timedelta(days=1)
    for status, error_class in ((200, ""), (499, "client_disconnected"), (502, "upstream_error"), (499, "stream_aborted")):
        record(alice, key=alice_api_key, status=status, error_class=error_class, at=yesterday)
    start, end = yesterday - timedelta(hours=1), timezone.now()
    totals = selectors.totals(alice.pk, start, end)
    assert (totals.requests, totals.errors) == (4, 2) and totals.error_rate == 0.5
    fold_days(now=timezone.now(), days=3)
    assert AnonymousAggregate.objects.get().errors == 2


def test_requests_and_their_error_rate_count_what_the_client_sent(alice_client, alice, alice_api_key):
    """One call that failed on its model and was answered by a fallback: one request, not an error."""
    now = hour_now()
    record(alice, key=alice_api_key, at=now, request_id="req_fallback-1", status=502, error_class="upstream_error")
    record(alice, key=alice_api_key, at=now, request_id="req_fallback", route_reason="fallback:5xx")
    record(alice, key=alice_api_key, at=now, request_id="req_failed", status=502, error_class="upstream_error")
    shown = cards(alice_client.get("/dashboard/"))
    assert shown["requests"]["value"] == "2" and "and 1 attempt a fallback took over" in shown["requests"]["note"]
    assert shown["error_rate"]["value"] == "50.0%"  # req_failed, of the 2 requests
