"""What the dashboards draw: cards and chart specifications built from totals, labels in the active language.

Each chart carries its numbers twice: as plain series for ``static/js/dashboard.js`` (through a
``json_script`` data island) and as formatted table rows for the ``<details>`` view under it.
"""

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .aggregate import Totals
from .selectors import Period

TOP_ITEMS = 10


# Formatting -----------------------------------------------------------------------------


def _number(value, places: int) -> str:
    rounded = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return formats.number_format(rounded, places, use_l10n=True, force_grouping=True)


def fmt(value, unit: str, places: int | None = None) -> str:
    """A value as the cabinet shows it; "—" when there is nothing to show. Amounts get cents from a
    dollar up and four decimals below (a spend of $0.0013 is not $0.00), or ``places``."""
    if value is None:
        return "—"
    if unit == "usd":
        if places is None:
            places = 2 if abs(value) >= 1 or value == 0 else 4
        return ("−$" if value < 0 else "$") + _number(abs(value), places)
    if unit == "percent":
        return _number(100 * value, 1) + "%"
    if unit == "ms":
        return _number(value, 0) + " " + _("ms")
    return _number(value, 0)


def change(current, previous, unit: str) -> dict | None:
    """The change from the previous period: relative for amounts, in points for rates."""
    if current is None or previous is None:
        return None
    if unit == "percent":
        delta = 100 * (current - previous)
        return {"value": delta, "text": ("+" if delta >= 0 else "−") + _number(abs(delta), 1) + " " + _("pts")}
    if not previous:
        return None
    delta = 100 * (float(current) - float(previous)) / float(previous)
    return {"value": delta, "text": ("+" if delta >= 0 else "−") + _number(abs(delta), 0) + "%"}


def _taken_over(attempts: int) -> str:
    """The requests card's note: failed attempts are upstream calls a fallback followed, not requests."""
    if not attempts:
        return ""
    text = ngettext("and %(count)s attempt a fallback took over", "and %(count)s attempts a fallback took over", attempts)
    return text % {"count": fmt(attempts, "count")}


def _card(key, label, current, previous, unit, better=None, note="") -> dict:
    delta = change(current, previous, unit)
    tone = "neutral"
    if delta and better and round(delta["value"], 1) != 0:
        tone = "good" if (delta["value"] > 0) == (better == "up") else "bad"
    return {"key": key, "label": label, "value": fmt(current, unit), "change": delta, "tone": tone, "note": note}


def cards(current: Totals, previous: Totals) -> list[dict]:
    share = current.savings_share
    provider_share = current.provider_cache_share
    return [
        _card("spend", _("Spend"), current.cost_usd, previous.cost_usd, "usd"),
        _card(
            "savings",
            _("Savings"),
            current.savings_usd,
            previous.savings_usd,
            "usd",
            "up",
            _("%(share)s of what it would have cost") % {"share": fmt(share, "percent")} if share is not None else "",
        ),
        _card(
            "requests",
            _("Requests"),
            current.client_requests,
            previous.client_requests,
            "count",
            note=_taken_over(current.failed_attempts),
        ),
        _card("tokens", _("Tokens"), current.tokens, previous.tokens, "count"),
        _card(
            "cache_hit_rate",
            _("Cache hit rate"),
            current.cache_hit_rate,
            previous.cache_hit_rate,
            "percent",
            "up",
            _("%(share)s of input tokens from provider caches") % {"share": fmt(provider_share, "percent")}
            if provider_share is not None
            else "",
        ),
        _card(
            "compression",
            _("Compression ratio"),
            current.compression_ratio,
            previous.compression_ratio,
            "percent",
            "down",
            _("prompt tokens sent per token received"),
        ),
        _card("error_rate", _("Error rate"), current.client_error_rate, previous.client_error_rate, "percent", "down"),
        _card("latency_p95", _("p95 latency"), current.latency_p95, previous.latency_p95, "ms", "down"),
    ]


def savings_breakdown(totals: Totals) -> list[dict]:
    parts = [
        (_("Compression"), totals.savings_compression_usd),
        (_("Response cache"), totals.savings_cache_usd),
        (_("Provider prompt caching"), totals.savings_provider_cache_usd),
        (_("Routing"), totals.savings_routing_usd),
    ]
    return [{"label": label, "value": fmt(value, "usd"), "amount": value} for label, value in parts]


# Charts ---------------------------------------------------------------------------------


def bucket_label(moment: datetime, grain: str) -> str:
    return formats.date_format(moment, "j M H:i" if grain == "hour" else "j M")


def _round(value, places=6):
    return None if value is None else round(float(value), places)


def _chart(key, title, description, kind, unit, labels, datasets, columns, rows, **options) -> dict:
    return {
        "id": key,
        "title": title,
        "description": description,
        "type": kind,
        "unit": unit,
        "labels": labels,
        "datasets": datasets,
        "table": {"columns": columns, "rows": rows},
        **options,
    }


def _series(label, data, color, **options) -> dict:
    return {"label": label, "data": data, "color": color, **options}


def cost_chart(period: Period, buckets: list) -> dict:
    labels = [bucket_label(moment, period.grain) for moment, _t in buckets]
    cost = [_round(t.cost_usd) for _m, t in buckets]
    baseline = [_round(t.baseline_cost_usd) for _m, t in buckets]
    return _chart(
        "cost",
        _("Cost vs baseline"),
        _("What you paid, and what the same calls would have cost without AURA: the gap is your savings."),
        "line",
        "usd",
        labels,
        [_series(_("Cost"), cost, "accent"), _series(_("Baseline (without AURA)"), baseline, "muted", fill="-1", fillColor="ok")],
        [_("Time (UTC)"), _("Cost"), _("Baseline (without AURA)"), _("Savings")],
        [
            [label, fmt(t.cost_usd, "usd"), fmt(t.baseline_cost_usd, "usd"), fmt(t.savings_usd, "usd")]
            for label, (_m, t) in zip(labels, buckets, strict=True)
        ],
    )


def charts(period: Period, buckets: list, totals: Totals, rows_by_model: list) -> list[dict]:
    labels = [bucket_label(moment, period.grain) for moment, _t in buckets]
    series = [t for _m, t in buckets]
    return [
        cost_chart(period, buckets),
        _chart(
            "requests",
            _("Requests and errors"),
            _("Upstream calls, the ones that failed, and the ones a fallback model answered."),
            "bar",
            "count",
            labels,
            [
                _series(_("Requests"), [t.requests for t in series], "accent"),
                _series(_("Errors"), [t.errors for t in series], "bad", line=True),
                _series(_("Fallbacks"), [t.fallbacks for t in series], "warn", line=True),
            ],
            [_("Time (UTC)"), _("Requests"), _("Errors"), _("Fallbacks"), _("Error rate")],
            [
                [label, fmt(t.requests, "count"), fmt(t.errors, "count"), fmt(t.fallbacks, "count"), fmt(t.error_rate, "percent")]
                for label, t in zip(labels, series, strict=True)
            ],
        ),
        _chart(
            "tokens",
            _("Tokens"),
            _("Input tokens (fresh and served from the provider's prompt cache) and output tokens."),
            "bar",
            "count",
            labels,
            [
                _series(_("Input"), [t.prompt_tokens - t.cached_tokens for t in series], "accent", stack="tokens"),
                _series(_("Cached input"), [t.cached_tokens for t in series], "ok", stack="tokens"),
                _series(_("Output"), [t.completion_tokens for t in series], "chart-3", stack="tokens"),
            ],
            [_("Time (UTC)"), _("Input"), _("Cached input"), _("Output"), _("Saved by compression")],
            [
                [
                    label,
                    fmt(t.prompt_tokens - t.cached_tokens, "count"),
                    fmt(t.cached_tokens, "count"),
                    fmt(t.completion_tokens, "count"),
                    fmt(t.tokens_saved, "count"),
                ]
                for label, t in zip(labels, series, strict=True)
            ],
        ),
        _chart(
            "cache",
            _("Cache hit rate"),
            _("Requests answered from AURA's response cache, and input tokens served from provider caches."),
            "line",
            "percent",
            labels,
            [
                _series(_("Response cache hits"), [_round(t.cache_hit_rate, 4) for t in series], "accent"),
                _series(_("Provider-cached input"), [_round(t.provider_cache_share, 4) for t in series], "ok"),
            ],
            [_("Time (UTC)"), _("Response cache hits"), _("Provider-cached input")],
            [
                [label, fmt(t.cache_hit_rate, "percent"), fmt(t.provider_cache_share, "percent")]
                for label, t in zip(labels, series, strict=True)
            ],
        ),
        _chart(
            "latency",
            _("Latency"),
            _("Median and 95th percentile of the whole call, AURA included."),
            "line",
            "ms",
            labels,
            [
                _series(_("p50"), [_round(t.latency_p50, 0) for t in series], "accent"),
                _series(_("p95"), [_round(t.latency_p95, 0) for t in series], "warn"),
            ],
            [_("Time (UTC)"), _("p50"), _("p95")],
            [[label, fmt(t.latency_p50, "ms"), fmt(t.latency_p95, "ms")] for label, t in zip(labels, series, strict=True)],
        ),
        model_chart(rows_by_model),
        routing_chart(totals),
    ]


def _top(items: list) -> list:
    """The largest items, with the rest folded into one "Other" item."""
    if len(items) <= TOP_ITEMS:
        return items
    rest = Totals()
    for _name, totals in items[TOP_ITEMS - 1 :]:
        for name in ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "baseline_cost_usd"):
            setattr(rest, name, getattr(rest, name) + getattr(totals, name))
    return [*items[: TOP_ITEMS - 1], (_("Other"), rest)]


def model_chart(rows_by_model: list) -> dict:
    items = _top([(model or _("(none)"), totals) for model, totals in rows_by_model])
    return _chart(
        "models",
        _("Model mix"),
        _("Requests per model actually used."),
        "bar",
        "count",
        [name for name, _t in items],
        [_series(_("Requests"), [t.requests for _n, t in items], "accent")],
        [_("Model"), _("Requests"), _("Tokens"), _("Cost"), _("Savings")],
        [[name, fmt(t.requests, "count"), fmt(t.tokens, "count"), fmt(t.cost_usd, "usd"), fmt(t.savings_usd, "usd")] for name, t in items],
        horizontal=True,
    )


def routing_chart(totals: Totals) -> dict:
    reasons = totals.route_reasons.most_common()
    everything = sum(count for _r, count in reasons)
    return _chart(
        "routing",
        _("Routing decisions"),
        _("Why each call went where it went; “fallback:…” calls were answered by a fallback model."),
        "bar",
        "count",
        [reason for reason, _c in reasons],
        [_series(_("Requests"), [count for _r, count in reasons], "chart-2")],
        [_("Route reason"), _("Requests"), _("Share")],
        [[reason, fmt(count, "count"), fmt(count / everything, "percent")] for reason, count in reasons],
        horizontal=True,
    )


def data_island(charts_: list[dict]) -> dict:
    """What dashboard.js needs: the series without the formatted tables."""
    return {"charts": [{key: value for key, value in chart.items() if key != "table"} for chart in charts_]}
