"""Metrics' part of a GDPR export: usage records (no content: there is none) and rollups."""

from accounts.exports import as_csv

USAGE_COLUMNS = [
    "request_id",
    "created",
    "endpoint",
    "model_requested",
    "model_used",
    "provider",
    "stream",
    "status",
    "error_class",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "tokens_original",
    "tokens_sent",
    "ttfb_ms",
    "latency_ms",
    "cost_usd",
    "baseline_cost_usd",
    "savings_compression_usd",
    "savings_cache_usd",
    "savings_provider_cache_usd",
    "savings_routing_usd",
    "cache_status",
    "route_reason",
    "compression",
    "ip",
    "user_agent",
]


def collect(user) -> dict:
    rows = list(user.usage_records.values(*USAGE_COLUMNS).iterator())
    return {
        "usage_records.csv": (
            "every API call of the last 14 days: tokens, cost, savings, timing (never content)",
            as_csv(rows, USAGE_COLUMNS),
        )
    }
