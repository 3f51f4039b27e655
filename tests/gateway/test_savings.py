import json
from decimal import Decimal
from io import StringIO

from django.core.management import call_command

from gateway import savings
from gateway.adapters.base import Usage
from gateway.catalog import Prices

CHEAP = Prices(Decimal("0.15"), Decimal("0.075"), Decimal(0), Decimal("0.6"))
DEAR = Prices(Decimal("2.5"), Decimal("1.25"), Decimal(0), Decimal("10"))
CLAUDE = Prices(Decimal("3"), Decimal("0.3"), Decimal("3.75"), Decimal("15"))


def test_routing_saves_the_price_gap():
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=100_000)
    s = savings.compute(usage=usage, used=CHEAP, baseline=DEAR, removed_tokens=0, aura_cached=False)
    assert s.actual == Decimal("0.21") and s.baseline == Decimal("3.5")
    assert s.routing == Decimal("3.29") and s.compression == 0 and s.provider_cache == 0


def test_compression_saves_the_removed_tokens_at_the_used_price():
    usage = Usage(prompt_tokens=700_000, completion_tokens=0)
    s = savings.compute(usage=usage, used=DEAR, baseline=DEAR, removed_tokens=300_000, aura_cached=False)
    assert s.compression == Decimal("0.75") and s.baseline == Decimal("2.5") and s.actual == Decimal("1.75")


def test_aura_placed_cache_reads_are_credited_and_writes_charged():
    usage = Usage(prompt_tokens=1_000_000, cached_tokens=800_000, completion_tokens=0)
    s = savings.compute(usage=usage, used=CLAUDE, baseline=CLAUDE, removed_tokens=0, aura_cached=True)
    assert s.provider_cache == Decimal("2.16")  # 800k tokens at 3.00 - 0.30
    first = Usage(prompt_tokens=1_000_000, cache_write_tokens=800_000)
    assert savings.compute(usage=first, used=CLAUDE, baseline=CLAUDE, removed_tokens=0, aura_cached=True).provider_cache == Decimal("-0.6")


def test_the_parts_always_add_up():
    usage = Usage(prompt_tokens=123_456, cached_tokens=65_432, cache_write_tokens=1_024, completion_tokens=7_890)
    s = savings.compute(usage=usage, used=CLAUDE, baseline=DEAR, removed_tokens=4_321, aura_cached=True)
    assert s.baseline - s.actual == s.total


def test_a_cache_hit_saves_the_whole_baseline():
    s = savings.cache_hit(usage=Usage(prompt_tokens=1000, completion_tokens=1000), baseline=DEAR, removed_tokens=0)
    assert s.actual == 0 and s.response_cache == s.baseline == Decimal("0.0125")


def test_user_show_reports_this_months_savings(sdk, alice):
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-aura-cache": "on"})
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-aura-cache": "on"})
    out = StringIO()
    call_command("aura", "user-show", "--email", "alice@example.org", stdout=out)
    month = json.loads(out.getvalue())["this_month"]
    assert month["requests"] == 3
    assert month["savings_usd"]["response_cache"] > 0
    assert abs(month["savings_usd"]["total"] - (month["baseline_usd"] - month["spend_usd"])) <= 2e-6


def test_a_prompt_past_a_models_long_context_threshold_is_billed_all_at_the_long_rates(alice, live_server):
    """Gemini's Pro models bill a prompt over 200k tokens, all of it and the answer, at a second tier."""
    import requests

    from gateway import services
    from tests.conftest import fixed_upstream, subscribe

    subscribe(alice, "team")  # (the free plan's 200k tokens a minute would stop the second call)

    def answer(prompt_tokens: int) -> bytes:
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 1000, "totalTokenCount": prompt_tokens + 1000}
        return json.dumps(
            {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}], "usageMetadata": usage}
        ).encode()

    costs = {}
    for prompt_tokens in (200_000, 250_000):
        with fixed_upstream("application/json", answer(prompt_tokens)) as base:
            key = services.provider_key_save(
                user=alice, provider="gemini", api_key="AIza-test-0123456789", base_url=base.removesuffix("/v1")
            )
            _key, secret = services.api_key_issue(user=alice, name=str(prompt_tokens))
            body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
            response = requests.post(
                f"{live_server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=20
            )
            assert response.status_code == 200, response.text
            costs[prompt_tokens] = Decimal(response.headers["x-aura-cost-usd"])
            key.delete()
    assert costs[200_000] == Decimal("0.26")  # 200k at $1.25 + 1k at $10: the first tier, up to its edge
    assert costs[250_000] == Decimal("0.64")  # 250k at $2.50 + 1k at $15
    listed = requests.get(f"{live_server.url}/v1/models/gemini-2.5-pro", headers={"Authorization": f"Bearer {secret}"}, timeout=20).json()
    assert listed["pricing"]["long_context"] == {
        "above_prompt_tokens": 200_000,
        "input": 2.5,
        "cached_input": 0.25,
        "cache_write": 0.0,
        "output": 15.0,
    }
