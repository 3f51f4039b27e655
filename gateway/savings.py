"""What a call would have cost without AURA, and what each mechanism saved.

The baseline is the model the client asked for (for ``auto``: the key's reference
model), the uncompressed prompt, no response cache, and no provider caching that
AURA added. The split is exact: baseline − actual = compression + provider cache
+ routing (+ response cache, which saves the whole baseline on a hit).
"""

from dataclasses import dataclass
from decimal import Decimal

from .adapters.base import Usage
from .catalog import Prices

ZERO = Decimal(0)


@dataclass(frozen=True)
class Savings:
    actual: Decimal
    baseline: Decimal
    compression: Decimal = ZERO
    response_cache: Decimal = ZERO
    provider_cache: Decimal = ZERO
    routing: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.compression + self.response_cache + self.provider_cache + self.routing


def cost(usage: Usage, prices: Prices) -> Decimal:
    prices = prices.for_prompt(usage.prompt_tokens)
    uncached = max(usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
    total = (
        uncached * prices.input
        + usage.cached_tokens * prices.cached_input
        + usage.cache_write_tokens * prices.cache_write
        + usage.completion_tokens * prices.output
    )
    return (total / Decimal(1_000_000)).quantize(Decimal("0.00000001"))


def compute(*, usage: Usage, used: Prices, baseline: Prices, removed_tokens: int, aura_cached: bool) -> Savings:
    """Savings of one upstream call. ``aura_cached``: the provider cache was AURA's doing (breakpoints it placed)."""
    actual = cost(usage, used)
    without_aura_cache = (
        Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, reasoning_tokens=usage.reasoning_tokens)
        if aura_cached
        else usage
    )
    uncompressed = Usage(
        prompt_tokens=without_aura_cache.prompt_tokens + max(removed_tokens, 0),
        cached_tokens=without_aura_cache.cached_tokens,
        cache_write_tokens=without_aura_cache.cache_write_tokens,
        completion_tokens=usage.completion_tokens,
    )
    at_used = cost(uncompressed, used)
    at_baseline = cost(uncompressed, baseline)
    provider_cache = cost(without_aura_cache, used) - actual
    return Savings(
        actual=actual,
        baseline=at_baseline,
        compression=at_used - cost(without_aura_cache, used),
        provider_cache=provider_cache,
        routing=at_baseline - at_used,
    )


def cache_hit(*, usage: Usage, baseline: Prices, removed_tokens: int) -> Savings:
    """A response-cache hit costs nothing at the provider: the whole baseline is saved."""
    original = Usage(prompt_tokens=usage.prompt_tokens + max(removed_tokens, 0), completion_tokens=usage.completion_tokens)
    base = cost(original, baseline)
    return Savings(actual=ZERO, baseline=base, response_cache=base)
