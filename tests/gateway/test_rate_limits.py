"""Per-key and per-account request, token and concurrency limits on /v1, over real HTTP.

Each test runs twice: on the shared cache (Redis, one Lua script, when REDIS_URL is set) and on
the in-process table the embedded single-process mode uses.
"""

import threading
import time

import pytest
import requests

from aura import cache
from billing import plans
from gateway import limits, services
from gateway.models import ApiKey

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=["shared", "in-process"])
def counters(request, monkeypatch, settings):
    if request.param == "shared" and not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        pytest.skip("the shared counters need REDIS_URL")
    if request.param == "in-process":
        monkeypatch.setattr("aura.cache.redis", lambda: None)
    return request.param


def small_plan(monkeypatch, **limits_):
    values = {"monthly_requests": 1000, "requests_per_minute": 100, "api_keys": 3, **limits_}
    plan = plans.Plan("free", "Free", 0, features=plans.FREE.features, **values)
    monkeypatch.setattr("billing.selectors.FREE", plan)
    monkeypatch.setitem(plans.PLANS, "free", plan)
    return plan


def post(url, key, body=HELLO, session=requests, **kwargs):
    return session.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20, **kwargs)


def configure(secret, **values):
    key = ApiKey.objects.get(prefix=secret[:12])
    services.api_key_configure(key=key, **values)


def test_a_key_can_have_a_lower_request_limit_than_the_plan(counters, live_server, alice, alice_key, upstream, monkeypatch):
    small_plan(monkeypatch)
    configure(alice_key, rpm_limit=2)
    responses = [post(live_server.url, alice_key) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "2"
    assert responses[1].headers["x-ratelimit-remaining-requests"] == "0"
    error = responses[2].json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "this API key's limit is 2" in error["message"]
    assert int(responses[2].headers["Retry-After"]) >= 1
    # The account's other keys keep the plan's limit.
    _key, other = services.api_key_issue(user=alice, name="other")
    answer = post(live_server.url, other)
    assert answer.status_code == 200 and answer.headers["x-ratelimit-limit-requests"] == "100"


def test_tokens_per_minute_are_charged_from_the_usage_and_enforced(counters, live_server, alice_key, upstream, monkeypatch):
    """On one keep-alive connection, as the SDKs call: each answer's headers count every call before it.

    (A call settles after its answer has left, so on a new connection to another thread or worker the
    next call can be admitted a moment before the previous one's tokens are charged.)"""
    small_plan(monkeypatch, tokens_per_minute=10_000)
    configure(alice_key, tpm_limit=30)
    client = requests.Session()
    first = post(live_server.url, alice_key, session=client)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "30"
    assert first.headers["x-ratelimit-remaining-tokens"] == "30"  # nothing charged before this call ended
    spent = first.json()["usage"]["total_tokens"]
    long = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tell me a long story " * 5}]}
    while spent < 30:
        answer = post(live_server.url, alice_key, long, session=client)
        assert answer.status_code == 200
        assert int(answer.headers["x-ratelimit-remaining-tokens"]) == 30 - spent
        spent += answer.json()["usage"]["total_tokens"]
    pools = client.get_adapter(live_server.url).poolmanager.pools
    assert sum(pools[key].num_connections for key in pools.keys()) == 1  # every call above went over the one connection
    refused = post(live_server.url, alice_key, session=client)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
    assert "tokens per minute (TPM): this API key's limit is 30" in error["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_the_plans_token_limit_binds_every_key(counters, live_server, alice_key, upstream, monkeypatch):
    small_plan(monkeypatch, tokens_per_minute=1)
    client = requests.Session()  # one connection: the first call's tokens are charged before the second is admitted
    assert post(live_server.url, alice_key, session=client).status_code == 200
    refused = post(live_server.url, alice_key, session=client)
    assert refused.status_code == 429 and "your plan's limit is 1" in refused.json()["error"]["message"]


def test_calls_in_flight_are_capped_per_account_and_freed_when_they_end(counters, live_server, alice_key, upstream, monkeypatch):
    small_plan(monkeypatch, concurrent_requests=1)
    upstream.chunk_delay_ms = 150
    try:
        stream_body = {**HELLO, "stream": True}
        streaming = post(live_server.url, alice_key, stream_body, stream=True)
        assert streaming.status_code == 200
        lines = streaming.iter_lines()
        next(lines)  # the stream is under way: its slot is taken
        busy = post(live_server.url, alice_key)
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert busy.headers["Retry-After"] == "1"
        for _ in lines:  # read the stream to its end
            pass
        streaming.close()
        deadline = time.monotonic() + 5
        while (answer := post(live_server.url, alice_key)).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answer.status_code == 200
    finally:
        upstream.chunk_delay_ms = 0


def test_a_client_that_leaves_mid_stream_frees_its_slot(counters, live_server, alice_key, upstream, monkeypatch):
    small_plan(monkeypatch, concurrent_requests=1)
    upstream.chunk_delay_ms = 100
    try:
        streaming = post(live_server.url, alice_key, {**HELLO, "stream": True}, stream=True)
        next(streaming.iter_lines())
        streaming.close()
        deadline = time.monotonic() + 10
        while (answer := post(live_server.url, alice_key)).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        upstream.chunk_delay_ms = 0


def test_refused_calls_do_not_count(counters, db):
    caller = services.Caller(key_id=7, user_id=7, rpm_limit=None)
    plan = plans.Plan("x", "X", 0, monthly_requests=10**6, requests_per_minute=3, api_keys=1)
    start = 1_800_000_000 - 1_800_000_000 % 60
    for n in range(3):
        limits.enforce(caller, plan, f"req_{n}", now=start + 1, touch=limits.touch_key)
    for n in range(20):  # hammering while refused…
        with pytest.raises(limits.ApiError):
            limits.enforce(caller, plan, f"refused_{n}", now=start + 2, touch=limits.touch_key)
    # …does not push the window further: once a minute has gone by, calls are admitted again.
    limits.enforce(caller, plan, "later", now=start + 121, touch=limits.touch_key)


def test_concurrent_admissions_never_exceed_the_limit(counters, db):
    caller = services.Caller(key_id=8, user_id=8)
    plan = plans.Plan("x", "X", 0, monthly_requests=10**6, requests_per_minute=25, api_keys=1, concurrent_requests=100)
    now = time.time()
    limits.enforce(caller, plan, "seed", now=now, touch=limits.touch_key)  # seeds the monthly counter
    admitted, refused = [], []

    def one(n):
        try:
            limits.enforce(caller, plan, f"req_{n}", now=now, touch=limits.touch_key)
            admitted.append(n)
        except limits.ApiError:
            refused.append(n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 24 and len(refused) == 36


def test_the_limits_still_hold_after_redis_forgets_its_scripts(db):
    """A restarted or flushed Redis has no scripts: the check teaches it again, and counts as before."""
    client = cache.redis()
    if client is None:
        pytest.skip("about Redis")
    caller = services.Caller(key_id=9, user_id=9)
    plan = plans.Plan("x", "X", 0, monthly_requests=10**6, requests_per_minute=2, api_keys=1)
    now = time.time()
    limits.enforce(caller, plan, "one", now=now, touch=limits.touch_key)
    client.script_flush()
    limits.enforce(caller, plan, "two", now=now, touch=limits.touch_key)
    with pytest.raises(limits.ApiError):
        limits.enforce(caller, plan, "three", now=now, touch=limits.touch_key)


def test_per_key_limits_are_set_in_the_cabinet(client, alice, alice_key):
    client.force_login(alice)
    key = ApiKey.objects.get(prefix=alice_key[:12])
    page = client.get(f"/keys/{key.pk}/")
    assert "60 requests a minute" in page.content.decode()  # the plan's limit, shown as the default
    form = {
        "compression": "lossless",
        "cache_ttl": 3600,
        "routing_policy": "cost",
        "reference_model": "gpt-4o",
        "rpm_limit": "0",
        "tpm_limit": "",
    }
    refused = client.post(f"/keys/{key.pk}/", form)
    assert refused.status_code == 200 and "greater than or equal to 1" in refused.content.decode()
    assert client.post(f"/keys/{key.pk}/", {**form, "rpm_limit": "10", "tpm_limit": "5000"}).status_code == 302
    key.refresh_from_db()
    assert (key.rpm_limit, key.tpm_limit) == (10, 5000)
    assert services.api_key_authenticate(alice_key).rpm_limit == 10


def test_retry_after_is_when_a_full_window_has_room_again(counters, alice, monkeypatch):
    """A sliding window drains only as the previous minute's share fades: calls counted this minute stay
    until it ends, and then fade over the next. Retry-After says when the next call is admitted: not a
    second before, and not later."""
    plan = small_plan(monkeypatch, requests_per_minute=2)
    caller = services.Caller(key_id=1, user_id=alice.pk)
    minute = (int(time.time()) // 60 + 2) * 60  # a minute with nothing counted in it or the one before

    def call(at: float):
        try:
            limits.enforce(caller, plan, f"req_{at}", now=at, touch=lambda key_id: None)
            limits.finish(alice.pk, caller.key_id, f"req_{at}", 0, False)
            return 200, None
        except limits.ApiError as error:
            return error.status, int(error.headers["Retry-After"])

    assert call(minute + 10) == (200, None)
    assert call(minute + 11) == (200, None)
    status, retry_after = call(minute + 12)
    # Both calls stay counted until this minute ends (48 s), then 2 fade to 1 by 30 s into the next.
    assert status == 429 and retry_after == 48 + 30
    assert call(minute + 12 + retry_after - 1)[0] == 429
    assert call(minute + 12 + retry_after) == (200, None)  # 30 s into the next minute: the two weigh 1
    # Now the previous minute's share (1, fading) and this call: the next has room once that share is gone.
    status, retry_after = call(minute + 90)
    assert status == 429 and retry_after == 30
    assert call(minute + 90 + retry_after - 1)[0] == 429
    assert call(minute + 90 + retry_after) == (200, None)


def test_reset_headers_say_when_the_window_is_back_to_its_initial_state():
    """OpenAI's meaning: the time until the limit resets to its initial state. A window's use fades at
    the limit's rate, so 3 of 600 requests take 0.3 s and 28 of 40 tokens 42 s; a full window takes
    at least until it has room again; nothing used is 0s."""

    def reset(rpm, used_requests, tpm, used_tokens, current=(0, 0, 0, 0), into=10.0):
        counts = limits.Counts(200, used_requests, 0, used_tokens, 0, 0, 0, False, {}, current, into)
        found = limits.headers(limits.Limits(rpm, 0, tpm, 0, 0, 0), counts)
        return found["x-ratelimit-reset-requests"], found["x-ratelimit-reset-tokens"]

    assert reset(600, 3, 40, 28, current=(3, 0, 28, 0)) == ("300ms", "42s")
    assert reset(600, 0, 40, 0) == ("0s", "0s")
    # Full, all of it counted this minute, 10 s in: room again only as this minute's count fades.
    requests_reset, tokens_reset = reset(3, 3, 1000, 0, current=(3, 0, 0, 0))
    assert requests_reset == "1m10s" and tokens_reset == "0s"
