"""Usage folded into sums: the one GROUP BY over raw records that rollups and live numbers share.

A *row* is a dict with the rollup fields (``ROLLUP_FIELDS``), the dimensions and a ``bucket``
(the start of its hour or day). ``Totals`` adds rows up: every field is a count or a sum, so
any rows merge, and percentiles come from the merged latency histogram.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour

from .models import LATENCY_BOUNDS_MS, empty_histogram, failed_calls

DIMENSIONS = ("user_id", "api_key_id", "model_used", "provider")
COUNT_FIELDS = (
    "requests",
    "failed_attempts",
    "errors",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "tokens_original",
    "tokens_sent",
    "cache_hits",
    "fallbacks",
)
MONEY_FIELDS = (
    "cost_usd",
    "baseline_cost_usd",
    "savings_compression_usd",
    "savings_cache_usd",
    "savings_provider_cache_usd",
    "savings_routing_usd",
)
ROLLUP_FIELDS = (*COUNT_FIELDS, *MONEY_FIELDS, "errors_by_class", "route_reasons", "latency_histogram")
_ZERO = Decimal(0)


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def day_floor(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_ceil(moment: datetime) -> datetime:
    floor = day_floor(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def _latency_counts() -> dict:
    counts, lower = {}, 0
    for index, upper in enumerate(LATENCY_BOUNDS_MS):
        counts[f"latency_{index}"] = Count("id", filter=Q(latency_ms__gte=lower, latency_ms__lt=upper))
        lower = upper
    counts[f"latency_{len(LATENCY_BOUNDS_MS)}"] = Count("id", filter=Q(latency_ms__gte=lower))
    return counts


def raw_rows(records) -> list[dict]:
    """Group usage records by dimensions and hour in one query, and fold them into rollup rows.

    The query also groups by error class and route reason (a handful of values each), so the
    per-class and per-reason counts come out of the same query; Python folds those groups.
    """
    groups = (
        records.order_by()
        .annotate(bucket=TruncHour("created"))
        .values(*DIMENSIONS, "bucket", "error_class", "route_reason")
        .annotate(
            requests=Count("id"),
            failed_attempts=Count("id", filter=Q(request_id__contains="-")),
            errors=Count("id", filter=failed_calls()),
            prompt_tokens=Sum("prompt_tokens"),
            cached_tokens=Sum("cached_tokens"),
            completion_tokens=Sum("completion_tokens"),
            tokens_original=Sum("tokens_original"),
            tokens_sent=Sum("tokens_sent"),
            cache_hits=Count("id", filter=Q(cache_status="hit")),
            **{name: Sum(name) for name in MONEY_FIELDS},
            **_latency_counts(),
        )
    )
    rows: dict[tuple, dict] = {}
    buckets = len(LATENCY_BOUNDS_MS) + 1
    for group in groups:
        key = (*(group[name] for name in DIMENSIONS), group["bucket"])
        row = rows.get(key)
        if row is None:
            row = rows[key] = {
                **dict(zip((*DIMENSIONS, "bucket"), key, strict=True)),
                **dict.fromkeys(COUNT_FIELDS, 0),
                **dict.fromkeys(MONEY_FIELDS, _ZERO),
                "errors_by_class": {},
                "route_reasons": {},
                "latency_histogram": empty_histogram(),
            }
        for name in COUNT_FIELDS:
            if name != "fallbacks":
                row[name] += group[name] or 0
        for name in MONEY_FIELDS:
            row[name] += group[name] or _ZERO
        reason = group["route_reason"]
        row["route_reasons"][reason] = row["route_reasons"].get(reason, 0) + group["requests"]
        if reason.startswith("fallback"):
            row["fallbacks"] += group["requests"]
        if group["errors"]:
            error_class = group["error_class"] or "other"
            row["errors_by_class"][error_class] = row["errors_by_class"].get(error_class, 0) + group["errors"]
        histogram = row["latency_histogram"]
        for index in range(buckets):
            histogram[index] += group[f"latency_{index}"]
    return list(rows.values())


def percentile(histogram: list[int], q: float) -> float | None:
    """The q-quantile of a latency histogram, interpolated linearly inside its bucket."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen, lower = q * total, 0, 0
    for index, count in enumerate(histogram):
        upper = LATENCY_BOUNDS_MS[index] if index < len(LATENCY_BOUNDS_MS) else None
        if count and seen + count >= rank:
            if upper is None:
                return float(lower)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return float(lower)


def _ratio(part, whole) -> float | None:
    return float(part) / float(whole) if whole else None


@dataclass
class Totals:
    """Rows added up, with the numbers the cabinet shows derived from the sums."""

    requests: int = 0
    failed_attempts: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    tokens_original: int = 0
    tokens_sent: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    cost_usd: Decimal = _ZERO
    baseline_cost_usd: Decimal = _ZERO
    savings_compression_usd: Decimal = _ZERO
    savings_cache_usd: Decimal = _ZERO
    savings_provider_cache_usd: Decimal = _ZERO
    savings_routing_usd: Decimal = _ZERO
    errors_by_class: Counter = field(default_factory=Counter)
    route_reasons: Counter = field(default_factory=Counter)
    latency_histogram: list = field(default_factory=empty_histogram)

    def add(self, row: dict) -> None:
        """Add a rollup row: the fields of ``ROLLUP_FIELDS``."""
        self.add_sums(row)
        self.add_details(row)
        self.latency_histogram = [a + b for a, b in zip(self.latency_histogram, row["latency_histogram"], strict=True)]

    def add_sums(self, row: dict) -> None:
        """Add the counts and money of a row (an SQL aggregate's ``None`` is nothing), and any ``latency_<i>`` sums."""
        for name in COUNT_FIELDS:
            setattr(self, name, getattr(self, name) + (row[name] or 0))
        for name in MONEY_FIELDS:
            setattr(self, name, getattr(self, name) + (row[name] or _ZERO))
        if "latency_0" in row:
            self.latency_histogram = [count + (row[f"latency_{i}"] or 0) for i, count in enumerate(self.latency_histogram)]

    def add_details(self, row: dict) -> None:
        """Add the per-error-class and per-route-reason counts of a row."""
        self.errors_by_class.update(row["errors_by_class"])
        self.route_reasons.update(row["route_reasons"])

    def merge(self, other: "Totals") -> None:
        for name in (*COUNT_FIELDS, *MONEY_FIELDS):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors_by_class.update(other.errors_by_class)
        self.route_reasons.update(other.route_reasons)
        self.latency_histogram = [a + b for a, b in zip(self.latency_histogram, other.latency_histogram, strict=True)]

    @property
    def savings_usd(self) -> Decimal:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def savings_share(self) -> float | None:
        """Savings as a share of what the calls would have cost without AURA."""
        return _ratio(self.savings_usd, self.baseline_cost_usd)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_saved(self) -> int:
        return self.tokens_original - self.tokens_sent

    @property
    def client_requests(self) -> int:
        """Requests as the plan's quota counts them: failed attempts before a fallback are not requests."""
        return self.requests - self.failed_attempts

    @property
    def cache_hit_rate(self) -> float | None:
        return _ratio(self.cache_hits, self.client_requests)

    @property
    def client_error_rate(self) -> float | None:
        """The share of the client's requests that failed: an attempt a fallback answered is not one."""
        return _ratio(max(self.errors - self.failed_attempts, 0), self.client_requests)

    @property
    def provider_cache_share(self) -> float | None:
        """Share of input tokens the provider served from its prompt cache."""
        return _ratio(self.cached_tokens, self.prompt_tokens)

    @property
    def compression_ratio(self) -> float | None:
        """Prompt tokens sent per token the client sent: 1.0 is no compression."""
        return _ratio(self.tokens_sent, self.tokens_original)

    @property
    def error_rate(self) -> float | None:
        return _ratio(self.errors, self.requests)

    @property
    def latency_p50(self) -> float | None:
        return percentile(self.latency_histogram, 0.50)

    @property
    def latency_p95(self) -> float | None:
        return percentile(self.latency_histogram, 0.95)
