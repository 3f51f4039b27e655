"""Routing over real HTTP: auto, allow-lists, fallbacks, cooldown, stickiness."""

import pytest
import requests

from gateway import catalog, routing, services
from gateway.models import ApiKey
from metrics.models import UsageRecord


@pytest.fixture
def key(alice, alice_key):
    return ApiKey.objects.get(user=alice)


@pytest.fixture
def call(live_server, alice_key):
    def send(body, headers=None):
        body = {"messages": [{"role": "user", "content": "ECHO:ok"}], **body}
        return requests.post(
            live_server.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {alice_key}", **(headers or {})},
            timeout=30,
        )

    return send


def cheapest(providers, *, needs):
    pool = [m for m in catalog.load().models.values() if m.provider in providers and routing.capable(m, needs)]
    floor = 1 if needs.difficulty == 0 else 2 if needs.difficulty <= 2 else 3
    strong = [m for m in pool if m.tier >= floor] or pool
    return min(strong, key=lambda m: (routing.estimated_cost(m, needs), m.id))


def test_auto_picks_the_cheapest_capable_model(call, upstream):
    response = call({"model": "auto", "messages": [{"role": "user", "content": "ECHO:hi"}]})
    assert response.status_code == 200
    needs = routing.needs_of({"messages": [{"role": "user", "content": "ECHO:hi"}]}, 10)
    expected = cheapest({"openai", "anthropic", "gemini"}, needs=needs)
    assert response.headers["x-aura-model"] == expected.id
    assert response.headers["x-aura-route-reason"] == "auto:cheapest-capable"
    record = UsageRecord.objects.get()
    assert record.model_requested == "auto" and record.model_used == expected.id and record.route_reason == "auto:cheapest-capable"


def test_a_calls_difficulty_is_read_only_for_automatic_routing():
    """A model named explicitly never needs it: reading it scans the whole prompt (tens of ms for 100 KB)."""
    parts = [{"type": "text", "text": "def f(): explain why step by step"}, {"type": "image_url"}]
    body = {"messages": [{"role": "user", "content": parts}]}
    judged, named = routing.needs_of(body, 10), routing.needs_of(body, 10, judge=False)
    assert judged.difficulty == 2 and named.difficulty == 0
    assert judged.vision and named.vision  # what a fallback must be capable of is still read


# The difficulty read fast (routing._difficulty) is the one the three expressions read.
_FRAGMENTS = [
    *("def ", "class ", "function", "return", "SELECT", "```", "#include", "=>", ";", "; ", ";\t", "\n"),
    *("integral", "Derivative", "EQUATION", "prove", "theorem", "probability", "\\frac", "\\SQRT", "\\in", "3", " + ", "*", "x", "=", "7"),
    *("step by step", "Step By", " step", "explain why", "analyse", "ANALYZE", "compare", "trade-off", "tradeoffs", "trade", "-", "offs"),
    *(
        "plan",
        "planet",
        "explanation",
        "design",
        "debug",
        "why does",
        "reasonable",
        "reason",
        "undefined",
        "subclass",
        "returns",
        "SELECTED",
    ),
    *("_", "a", "1", " ", ".", ",", "\r\n", "é", "ß", "ü", "K", "ı", "ſ", "İ", "ﬁ", "ǅ", "日本"),
]


def test_the_fast_difficulty_reads_what_the_three_expressions_read():
    import random

    rng = random.Random(20261129)
    seen = set()
    for _ in range(6000):
        text = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 12)))
        expected = sum(bool(pattern.search(text)) for pattern in (routing._CODE, routing._MATH, routing._REASONING))
        assert routing._difficulty(text) == expected, text
        seen.add(expected)
    assert seen == {0, 1, 2, 3}
    # Overlapping phrases, boundaries at both ends of the text, and the folds lower() does not share:
    for text, expected in [
        ("xstep by step by step", 1),
        ("planet design_x reasonable", 0),
        ("PLAN", 1),
        ("reaſon", 1),
        ("İntegral", 1),
        ("ıntegral of return", 2),
        ("a = 1;  \nthen", 1),
        ("a = 1;  then", 0),
        ("tradeoffsx", 0),
    ]:
        assert routing._difficulty(text) == expected, text


def test_auto_respects_tools_and_vision(call, upstream):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    image = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    response = call({"model": "aura/auto", "tools": tools, "messages": [{"role": "user", "content": image}]})
    chosen = catalog.load().models[response.headers["x-aura-model"]]
    assert chosen.supports("tools") and chosen.supports("vision")


def test_a_hard_prompt_gets_a_stronger_tier(call, upstream):
    hard = "Prove step by step that the integral of x^2 from 0 to 1 equals 1/3, then write def check(): return 1/3 in Python."
    response = call({"model": "auto", "messages": [{"role": "user", "content": hard}]})
    assert catalog.load().models[response.headers["x-aura-model"]].tier >= 3 - 0  # difficulty 3 needs the top tier


def test_the_quality_policy_prefers_the_top_tier(call, upstream, key):
    services.api_key_configure(key=key, routing_policy="quality")
    response = call({"model": "auto"})
    assert catalog.load().models[response.headers["x-aura-model"]].tier == 3
    assert response.headers["x-aura-route-reason"] == "auto:quality"


def test_an_allow_list_limits_auto_and_refuses_other_models(call, upstream, key):
    services.api_key_configure(key=key, allowed_models=["gemini-2.5-flash"])
    assert call({"model": "auto"}).headers["x-aura-model"] == "gemini-2.5-flash"
    refused = call({"model": "gpt-4o-mini"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"


def test_explicit_models_are_honoured_exactly(call, upstream):
    response = call({"model": "claude-haiku-4-5"})
    assert response.headers["x-aura-model"] == "claude-haiku-4-5" and response.headers["x-aura-route-reason"] == "explicit"


def test_a_429_falls_back_to_the_next_model(call, upstream, key):
    services.api_key_configure(key=key, fallback_models=["claude-haiku-4-5"])
    upstream.fail_next(429, headers={"Retry-After": "30"})
    response = call({"model": "gpt-4o-mini"})
    assert response.status_code == 200
    assert response.headers["x-aura-model"] == "claude-haiku-4-5"
    assert response.headers["x-aura-route-reason"] == "fallback:429"
    failed, served = UsageRecord.objects.order_by("id")
    assert failed.status == 429 and failed.request_id == response.headers["x-request-id"] + "-1"
    assert served.status == 200 and served.request_id == response.headers["x-request-id"]


def test_a_5xx_falls_back_and_a_timeout_too(call, upstream, key, settings):
    services.api_key_configure(key=key, fallback_models=["gemini-2.5-flash"])
    upstream.fail_next(500)
    assert call({"model": "gpt-4o-mini"}).headers["x-aura-route-reason"] == "fallback:5xx"
    settings.AURA_UPSTREAM_READ_TIMEOUT = 0.5
    response = call({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "FAIL_TIMEOUT"}]})
    assert response.headers.get("x-aura-route-reason") == "fallback:timeout"


def test_a_short_retry_after_is_honoured_on_the_same_model(call, upstream):
    upstream.fail_next(429, headers={"Retry-After": "1"})
    response = call({"model": "gpt-4o-mini"})
    assert response.status_code == 200 and response.headers["x-aura-model"] == "gpt-4o-mini"
    assert UsageRecord.objects.count() == 2


def test_a_failing_provider_cools_down_for_every_node(call, upstream, key):
    services.api_key_configure(key=key, fallback_models=["claude-haiku-4-5"])
    for _ in range(routing.BREAKER_THRESHOLD):
        upstream.fail_next(503)
        call({"model": "gpt-4o-mini"})
    upstream.reset()
    response = call({"model": "gpt-4o-mini"})
    assert response.headers["x-aura-route-reason"] == "fallback:cooldown"
    assert response.headers["x-aura-provider"] == "anthropic"
    assert not any(r["path"] == "/v1/chat/completions" for r in upstream.requests)


def test_a_success_clears_the_failure_streak_so_scattered_errors_never_cool_a_provider_down(call, upstream, key):
    services.api_key_configure(key=key, fallback_models=["claude-haiku-4-5"])
    for _ in range(routing.BREAKER_THRESHOLD + 2):
        upstream.fail_next(503)  # each call fails on OpenAI, then falls back to Anthropic
        call({"model": "gpt-4o-mini"})
        response = call({"model": "gpt-4o-mini"})  # …and the next one succeeds on OpenAI
        assert response.headers["x-aura-provider"] == "openai"
    response = call({"model": "gpt-4o-mini"})
    assert response.headers["x-aura-route-reason"] == "explicit"  # never "fallback:cooldown"


def test_auto_sticks_to_one_route_per_conversation(call, upstream):
    first = call({"model": "auto", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "ECHO:1"}]})
    later = call(
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": "ECHO:1"},
                {"role": "assistant", "content": "1"},
                {"role": "user", "content": "Now prove step by step why def f(): return 1 works, with an integral."},
            ],
        }
    )
    assert later.headers["x-aura-model"] == first.headers["x-aura-model"]


def test_balanced_prefers_the_provider_the_aggregates_show_healthy(call, upstream, key):
    from datetime import timedelta

    from django.utils import timezone

    from metrics.models import AnonymousAggregate

    services.api_key_configure(key=key, routing_policy="balanced")
    day = timezone.now().date() - timedelta(days=1)
    needs = routing.needs_of({"messages": [{"role": "user", "content": "ECHO:ok"}]}, 10)
    cheapest_model = cheapest({"openai", "anthropic", "gemini"}, needs=needs)
    AnonymousAggregate.objects.create(
        day=day, provider=cheapest_model.provider, model=cheapest_model.id, requests=100, errors=90, latency_ms_total=100 * 9000
    )
    response = call({"model": "auto"})
    assert response.headers["x-aura-route-reason"] == "auto:balanced"
    assert catalog.load().models[response.headers["x-aura-model"]].provider != cheapest_model.provider


def test_a_refused_custom_servers_model_is_named_as_asked(call, upstream, key, alice):
    services.provider_key_save(user=alice, provider="custom", api_key="sk-local-0123456789", base_url=f"{upstream.url}/v1", label="slow2")
    services.api_key_configure(key=key, allowed_models=["gemini-2.5-flash"])
    refused = call({"model": "slow2/gpt-4o-mini"})
    assert refused.status_code == 403 and refused.json()["error"]["message"] == "This AURA key is not allowed to use 'slow2/gpt-4o-mini'."


def test_one_accounts_rate_limited_key_does_not_cool_the_provider_down_for_others(call, upstream, key, bob, live_server):
    from tests.conftest import wire

    services.api_key_configure(key=key, fallback_models=["claude-haiku-4-5"])
    for _ in range(routing.BREAKER_THRESHOLD + 1):  # alice's OpenAI key is out of credit
        upstream.fail_next(429, headers={"Retry-After": "30"})
        assert call({"model": "gpt-4o-mini"}).headers["x-aura-route-reason"] == "fallback:429"
    bobs = wire(bob, upstream)
    ApiKey.objects.filter(user=bob).update(fallback_models=["claude-haiku-4-5"])
    response = requests.post(
        live_server.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ECHO:bob"}]},
        headers={"Authorization": f"Bearer {bobs}"},
        timeout=30,
    )
    assert (response.headers["x-aura-model"], response.headers["x-aura-route-reason"]) == ("gpt-4o-mini", "explicit")


def test_fallbacks_keep_to_the_allow_list_and_are_few(call, upstream, key, alice_client):
    services.api_key_configure(key=key, allowed_models=["gpt-4o-mini"], fallback_models=["claude-opus-4-5"])
    upstream.fail_next(500)
    upstream.fail_next(500)
    response = call({"model": "gpt-4o-mini"})
    assert response.status_code == 502 and response.headers["x-aura-model"] == "gpt-4o-mini"
    assert not any(r["path"].startswith("/v1/messages") for r in upstream.requests)  # Anthropic never called
    form = {"name": key.name, "compression": "off", "cache_ttl": 3600, "routing_policy": "cost", "reference_model": "gpt-4o"}
    page = alice_client.post(f"/keys/{key.pk}/", {**form, "allowed_models": "gpt-4o-mini", "fallback_models": "claude-opus-4-5"})
    assert "Not among the allowed models: claude-opus-4-5" in page.content.decode()
    many = ", ".join(f"openai/fb-{n}" for n in range(routing.MAX_FALLBACKS + 1))
    page = alice_client.post(f"/keys/{key.pk}/", {**form, "allowed_models": "", "fallback_models": many})
    assert f"At most {routing.MAX_FALLBACKS} fallback models." in page.content.decode()


def test_a_call_stops_trying_a_host_that_keeps_failing(call, upstream, key):
    services.api_key_configure(key=key, fallback_models=[f"openai/fb-{n}" for n in range(routing.MAX_FALLBACKS)])
    for _ in range(20):
        upstream.fail_next(500)
    assert call({"model": "gpt-4o-mini"}).status_code == 502
    chat_calls = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat_calls) == routing.BREAKER_THRESHOLD + 1  # not 2 × 6: the last route tried gets its one retry


def test_fallbacks_skipped_for_their_host_leave_the_last_try_its_retry_and_one_record_per_call(call, upstream, key):
    from aura import cache

    services.api_key_configure(key=key, fallback_models=["openai/fb-0", "openai/fb-1"])
    openai_host = routing.host(routing._keyed(services.sealed_vault(key.user_id), "openai"))
    cache.set(f"gw:cb:fails:{openai_host}", routing.BREAKER_THRESHOLD - 1, 60)
    upstream.fail_next(500)  # the fifth failure in a row: the fallbacks, on the same host, are skipped
    response = call({"model": "gpt-4o-mini"})
    assert response.status_code == 200  # the one route left got its retry
    chat_calls = [r for r in upstream.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat_calls) == 2 == UsageRecord.objects.count()
    assert sorted(UsageRecord.objects.values_list("status", flat=True)) == [200, 502]
