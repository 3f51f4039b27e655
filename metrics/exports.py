"""Metrics' part of a GDPR export: usage records (no content: there is none), rollups and alerts."""

from accounts.exports import as_csv, as_json

from .models import DailyRollup

USAGE_COLUMNS = [
    "request_id",
    "created",
    "api_key_id",
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


DAILY_COLUMNS = [
    "day",
    "api_key_id",
    "model_used",
    "provider",
    "requests",
    "failed_attempts",
    "errors",
    "errors_by_class",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "tokens_original",
    "tokens_sent",
    "cache_hits",
    "fallbacks",
    "route_reasons",
    "cost_usd",
    "baseline_cost_usd",
    "savings_compression_usd",
    "savings_cache_usd",
    "savings_provider_cache_usd",
    "savings_routing_usd",
    "latency_histogram",
]


def collect(user) -> dict:
    rows = list(user.usage_records.values(*USAGE_COLUMNS).iterator())
    daily = list(DailyRollup.objects.filter(user=user).order_by("day").values(*DAILY_COLUMNS).iterator())
    alerts = list(user.alerts.values("created", "kind", "period", "api_key_id", "details", "email", "sent_to", "sent_at"))
    settings = user.alert_settings if hasattr(user, "alert_settings") else None
    return {
        "usage_records.csv": (
            "every API call of the last 14 days: tokens, cost, savings, timing (never content)",
            as_csv(rows, USAGE_COLUMNS),
        ),
        "usage_daily.csv": (
            "your usage per day, AURA key, model and provider, kept while the account lives (counts and money only)",
            as_csv(daily, DAILY_COLUMNS),
        ),
        "alerts.json": (
            "your alert settings, key budgets and every alert raised (plan limits, budgets, spikes)",
            as_json(
                {
                    "settings": {
                        "plan_alerts": settings.plan_alerts,
                        "budget_alerts": settings.budget_alerts,
                        "anomaly_alerts": settings.anomaly_alerts,
                        "monthly_budget_usd": settings.monthly_budget_usd,
                        "thresholds": settings.thresholds,
                        "recipients": settings.recipients,
                    }
                    if settings
                    else None,
                    "key_budgets": list(user.api_keys.filter(budget__isnull=False).values("id", "name", "budget__monthly_budget_usd")),
                    "alerts": alerts,
                }
            ),
        ),
    }
