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
