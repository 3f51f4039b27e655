"""The private response cache, over real HTTP and the real shared cache (Redis in CI)."""

import os
import time

import pytest
import requests
from django.conf import settings

from gateway import services
from gateway.models import ApiKey
from metrics.models import UsageRecord

CANARY = "CANARY-cache-3e7d1f"


@pytest.fixture
def call(live_server, alice_key):
    def send(content, headers=None, key=alice_key, **extra):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}
        return requests.post(
            live_server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=20
        )

    return send


def test_off_by_default(call, upstream):
    first, second = call("ECHO:x"), call("ECHO:x")
    assert first.headers["x-aura-cache-status"] == second.headers["x-aura-cache-status"] == "bypass"
    assert len(upstream.requests) == 2


def test_a_repeat_is_answered_without_the_provider(call, upstream):
    miss = call("ECHO:cached answer", {"x-aura-cache": "on"})
    hit = call("ECHO:cached answer", {"x-aura-cache": "on"})
    assert miss.headers["x-aura-cache-status"] == "miss" and hit.headers["x-aura-cache-status"] == "hit"
    assert hit.json()["choices"] == miss.json()["choices"]
    assert len(upstream.requests) == 1
    record = UsageRecord.objects.get(request_id=hit.headers["x-request-id"])
    assert record.cost_usd == 0 and record.cache_status == "hit"
    assert record.savings_cache_usd == record.baseline_cost_usd > 0
    assert float(hit.headers["x-aura-savings-usd"]) == float(record.baseline_cost_usd)


def test_a_hit_on_an_answer_a_fallback_gave_reports_the_model_that_gave_it(call, upstream, alice_key):
    key = ApiKey.objects.get(prefix=alice_key[:12])
    services.api_key_configure(key=key, fallback_models=["claude-haiku-4-5"])
    upstream.fail_next(500)
    upstream.fail_next(500)  # (a single 5xx is retried once on the same model)
    miss = call("ECHO:from the fallback", {"x-aura-cache": "on"})
    hit = call("ECHO:from the fallback", {"x-aura-cache": "on"})
    assert miss.headers["x-aura-model"] == "claude-haiku-4-5" and miss.headers["x-aura-route-reason"] == "fallback:5xx"
    assert hit.headers["x-aura-cache-status"] == "hit"
    assert (hit.headers["x-aura-model"], hit.headers["x-aura-provider"]) == ("claude-haiku-4-5", "anthropic")
    assert hit.headers["x-aura-route-reason"] == "fallback:5xx" and hit.json() == miss.json()
    record = UsageRecord.objects.get(request_id=hit.headers["x-request-id"])
    assert (record.model_used, record.provider) == ("claude-haiku-4-5", "anthropic")
    # The fallback no longer in the key's plan: the entry is not replayed under the model asked for.
    services.api_key_configure(key=key, fallback_models=[])
    again = call("ECHO:from the fallback", {"x-aura-cache": "on"})
    assert again.headers["x-aura-cache-status"] == "miss" and again.headers["x-aura-model"] == "gpt-4o-mini"


def test_any_change_that_alters_the_answer_misses(call, upstream):
    call("ECHO:a", {"x-aura-cache": "on"})
    assert call("ECHO:a", {"x-aura-cache": "on"}, temperature=0.5).headers["x-aura-cache-status"] == "miss"
    assert call("ECHO:b", {"x-aura-cache": "on"}).headers["x-aura-cache-status"] == "miss"
    # Delivery details do not: a streamed repeat is a hit.
    assert call("ECHO:a", {"x-aura-cache": "on"}, user="someone").headers["x-aura-cache-status"] == "hit"


def test_refresh_calls_the_provider_and_stores_again(call, upstream):
    call("ECHO:r", {"x-aura-cache": "on"})
    refreshed = call("ECHO:r", {"x-aura-cache": "refresh"})
    assert refreshed.headers["x-aura-cache-status"] == "miss"
    assert len(upstream.requests) == 2
    assert call("ECHO:r", {"x-aura-cache": "on"}).headers["x-aura-cache-status"] == "hit"


def test_the_ttl_expires_entries(call, upstream):
    call("ECHO:t", {"x-aura-cache": "on", "x-aura-cache-ttl": "1"})
    time.sleep(1.2)
    assert call("ECHO:t", {"x-aura-cache": "on"}).headers["x-aura-cache-status"] == "miss"


def test_a_bad_ttl_header_is_a_400(call):
    response = call("hi", {"x-aura-cache": "on", "x-aura-cache-ttl": "forever"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-aura-cache-ttl"


def test_the_key_setting_turns_it_on(call, upstream, alice):
    services.api_key_configure(key=ApiKey.objects.get(user=alice), cache_enabled=True, cache_ttl=60)
    call("ECHO:k")
    assert call("ECHO:k").headers["x-aura-cache-status"] == "hit"


def test_streamed_requests_are_stored_and_replayed_as_sse(call, upstream, sdk):
    first = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO:stream me"}], stream=True, extra_headers={"x-aura-cache": "on"}
        )
    )
    replay_raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "ECHO:stream me"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-aura-cache": "on"},
    )
    assert replay_raw.headers["x-aura-cache-status"] == "hit"
    replayed = list(replay_raw.parse())
    text = lambda chunks: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # noqa: E731
    assert text(replayed) == text(first) == "stream me"
    assert replayed[-1].usage.completion_tokens == 2
    assert len(upstream.requests) == 1


def test_a_cached_non_stream_answer_replays_as_a_stream(call, upstream, sdk):
    call("ECHO:both ways", {"x-aura-cache": "on"})
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO:both ways"}], stream=True, extra_headers={"x-aura-cache": "on"}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "both ways"
    assert len(upstream.requests) == 1


def test_accounts_never_share_entries(call, upstream, bob):
    from .conftest import wire

    bobs_key = wire(bob, upstream)
    call("ECHO:shared?", {"x-aura-cache": "on"})
    assert call("ECHO:shared?", {"x-aura-cache": "on"}, key=bobs_key).headers["x-aura-cache-status"] == "miss"


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis (REDIS_URL)")
def test_a_redis_dump_holds_no_prompt_or_answer(call, upstream, sdk):
    import redis

    call(f"{CANARY} ECHO:{CANARY}-answer", {"x-aura-cache": "on"})
    list(
        sdk.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": f"ECHO:{CANARY}"}],
            stream=True,
            extra_headers={"x-aura-cache": "on"},
        )
    )
    found = 0
    for db in range(16):
        client = redis.Redis.from_url(settings.REDIS_URL, db=db)
        for key in client.scan_iter(count=1000):
            found += 1
            assert CANARY.encode() not in key
            kind = client.type(key)
            value = client.get(key) if kind == b"string" else repr(client.dump(key)).encode()
            assert CANARY.encode() not in (value or b"")
            assert b"sk-openai-secret" not in (value or b"")
    assert found > 0


def test_with_redis_down_calls_still_go_through(call, upstream, settings, caplog):
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
        }
    }
    try:
        started = time.monotonic()
        responses = [call("ECHO:no redis", {"x-aura-cache": "on"}) for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert time.monotonic() - started < 5
        assert sum("shared cache unavailable" in r.getMessage() for r in caplog.records) == 1
    finally:
        caches["default"].close()


def test_each_custom_server_and_each_base_url_has_its_own_entries(call, upstream, alice):
    import json as jsonlib

    from tests.conftest import fixed_upstream

    other = {
        "id": "chatcmpl-b",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ANSWER FROM SERVER B"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    with fixed_upstream("application/json", jsonlib.dumps(other).encode()) as server_b:
        services.provider_key_save(user=alice, provider="custom", api_key="sk-a-0123456789", base_url=f"{upstream.url}/v1", label="srva")
        services.provider_key_save(user=alice, provider="custom", api_key="sk-b-0123456789", base_url=server_b, label="srvb")
        cached = {"x-aura-cache": "on"}
        first = call("ECHO:from server A", cached, model="srva/gpt-4o-mini")
        second = call("ECHO:from server A", cached, model="srvb/gpt-4o-mini")
        assert first.json()["choices"][0]["message"]["content"] == "from server A"
        assert second.headers["x-aura-cache-status"] == "miss"
        assert second.json()["choices"][0]["message"]["content"] == "ANSWER FROM SERVER B"
        assert (first.headers["x-aura-model"], second.headers["x-aura-model"]) == ("srva/gpt-4o-mini", "srvb/gpt-4o-mini")
        assert call("ECHO:from server A", cached, model="srvb/gpt-4o-mini").headers["x-aura-cache-status"] == "hit"
        records = UsageRecord.objects.order_by("created").values_list("model_used", flat=True)
        assert list(records) == ["srva/gpt-4o-mini", "srvb/gpt-4o-mini", "srvb/gpt-4o-mini"]


def test_custom_without_a_label_says_to_use_the_servers_label(call, upstream, alice):
    services.provider_key_save(user=alice, provider="custom", api_key="sk-a-0123456789", base_url=f"{upstream.url}/v1", label="vllm")
    error = call("hi", model="custom/llama3.3").json()["error"]
    assert error["code"] == "provider_key_missing" and "'label/model' (yours: vllm)" in error["message"]
