"""Quota and rate limits in the gateway: atomic counters in the shared cache."""

import os

import pytest
import requests

from billing import plans
from gateway import limits, services
from tests.conftest import subscribe, web_server

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def small_free_plan(monkeypatch):
    small = plans.Plan("free", "Free", 0, monthly_requests=5, requests_per_minute=3, api_keys=3, features=plans.FREE.features)
    monkeypatch.setattr("billing.selectors.FREE", small)
    monkeypatch.setitem(plans.PLANS, "free", small)
    return small


def post(url, key):
    return requests.post(url + "/v1/chat/completions", json=HELLO, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def test_rpm_is_enforced_with_openai_headers(live_server, alice_key, upstream, small_free_plan):
    responses = [post(live_server.url, alice_key) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert responses[0].headers["x-ratelimit-remaining-requests"] == "2"
    assert responses[0].headers["x-ratelimit-reset-requests"].endswith("s")
    error = responses[3].json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert int(responses[3].headers["Retry-After"]) >= 1


def test_the_monthly_quota_is_enforced(live_server, alice_key, upstream, small_free_plan, monkeypatch):
    bigger_rate = plans.Plan("free", "Free", 0, monthly_requests=5, requests_per_minute=100, api_keys=3, features=plans.FREE.features)
    monkeypatch.setattr("billing.selectors.FREE", bigger_rate)
    monkeypatch.setitem(plans.PLANS, "free", bigger_rate)
    statuses = [post(live_server.url, alice_key).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    error = post(live_server.url, alice_key).json()["error"]
    assert error["code"] == "insufficient_quota" and "this month's 5 requests" in error["message"]


def test_a_paid_plan_lifts_the_limits(live_server, alice, alice_key, upstream, small_free_plan):
    subscribe(alice, "team")
    assert all(post(live_server.url, alice_key).status_code == 200 for _ in range(6))


def test_the_sliding_window_counts_the_previous_minute(db):
    caller = services.Caller(key_id=424242, user_id=424242)
    plan = plans.Plan("x", "X", 0, monthly_requests=10**6, requests_per_minute=10, api_keys=1)
    start = 1_800_000_000 - 1_800_000_000 % 60
    for n in range(10):
        limits.enforce(caller, plan, f"req_{n}", now=start + 59, touch=limits.touch_key)  # a burst at the end of one minute
    with pytest.raises(limits.ApiError):
        limits.enforce(caller, plan, "req_late", now=start + 61, touch=limits.touch_key)  # …cannot be doubled just after the boundary


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="two web processes share limits only through Redis")
def test_two_web_processes_share_one_limit(transactional_db, alice, upstream):
    from gateway.services import api_key_issue
    from tests.gateway.conftest import wire

    key = wire(alice, upstream)
    _k, key = api_key_issue(user=alice, name="two")
    with web_server("--workers", "1") as first, web_server("--workers", "1") as second:
        urls = [first, second]
        limit = plans.FREE.requests_per_minute
        statuses = [post(urls[i % 2], key).status_code for i in range(limit + 6)]
        assert statuses.count(200) == limit and statuses.count(429) == 6
