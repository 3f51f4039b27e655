"""Read-side queries over usage: rollups where they are complete, raw records for the rest."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import BigIntegerField, Count, F, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from .aggregate import COUNT_FIELDS, MONEY_FIELDS, Totals, day_ceil, day_floor, hour_floor, raw_rows
from .models import (
    LATENCY_BOUNDS_MS,
    Alert,
    AlertSettings,
    DailyRollup,
    HourlyRollup,
    KeyBudget,
    RollupWatermark,
    UsageRecord,
    failed_calls,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def month_start(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def watermark() -> datetime | None:
    """Usage records created before this moment are in the rollups; None until the first rollup."""
    return RollupWatermark.objects.filter(pk=1).values_list("until", flat=True).first()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


_SUMS = {name: Sum(name) for name in (*COUNT_FIELDS, *MONEY_FIELDS)}
# The histogram is summed bucket by bucket in SQL (JSON array element i of every row).
_LATENCY_SUMS = {
    f"latency_{i}": Sum(Cast(KeyTextTransform(str(i), "latency_histogram"), BigIntegerField())) for i in range(len(LATENCY_BOUNDS_MS) + 1)
}


def _cover(user_id, start, end, filters, daily) -> tuple[list, object]:
    """The rollup querysets (each with its time field) and the raw records that together cover [start, end).

    Whole days come from daily rollups (when ``daily``), other rolled-up hours from hourly
    rollups, and what the rollups do not hold yet — usually the current hour — from the raw
    records. ``filters`` narrows by ``api_key_id``, ``model_used`` and ``provider``.
    """
    mark = watermark()
    live = start if mark is None else min(max(hour_floor(mark), start), end)
    hours = [(start, live)]
    parts = []
    first_day, last_day = day_ceil(start), day_floor(live)
    if daily and first_day < last_day:
        hours = [(start, first_day), (last_day, live)]
        days = DailyRollup.objects.filter(user_id=user_id, day__gte=first_day.date(), day__lt=last_day.date(), **filters)
        parts.append((days, "day"))
    for low, high in hours:
        if low < high:
            parts.append((HourlyRollup.objects.filter(user_id=user_id, hour__gte=low, hour__lt=high, **filters), "hour"))
    raw = UsageRecord.objects.filter(user_id=user_id, created__gte=live, created__lt=end, **filters) if live < end else None
    return parts, raw


def _group_key(row: dict, by: tuple, time_field: str) -> tuple:
    if "bucket" not in by:
        return tuple(row[name] for name in by)
    moment = _day_start(row["day"]) if time_field == "day" else row[time_field]
    return tuple(moment if name == "bucket" else row[name] for name in by)


def usage(
    user_id: int,
    start: datetime,
    end: datetime,
    *,
    by: tuple = (),
    filters: dict | None = None,
    daily: bool = True,
    latency: bool = True,
    details: bool = False,
) -> dict[tuple, Totals]:
    """An account's usage in [start, end) (hour boundaries), as Totals per group of ``by``.

    ``by`` names any of "bucket" (the start of each row's hour, or day for daily rollups),
    "model_used", "provider" and "api_key_id". Sums run in SQL; ``latency`` adds the
    histograms, ``details`` the per-class and per-reason counts (read row by row: only
    where a page shows them).
    """
    filters = filters or {}
    groups: dict[tuple, Totals] = defaultdict(Totals)
    aggregates = {**_SUMS, **(_LATENCY_SUMS if latency else {})}
    parts, raw = _cover(user_id, start, end, filters, daily)
    for queryset, time_field in parts:
        names = [time_field if name == "bucket" else name for name in by]
        if names:
            for row in queryset.values(*names).annotate(**aggregates).order_by():
                groups[_group_key(row, by, time_field)].add_sums(row)
        else:
            groups[()].add_sums(queryset.aggregate(**aggregates))
        if details:
            for row in queryset.values(*names, "route_reasons", "errors_by_class"):
                groups[_group_key(row, by, time_field)].add_details(row)
    if raw is not None:
        for row in raw_rows(raw):
            groups[_group_key(row, by, "bucket")].add(row)
    return groups


def totals(user_id: int, start: datetime, end: datetime, **options) -> Totals:
    return usage(user_id, start, end, **options).get((), Totals())


def has_usage(user_id: int) -> bool:
    return UsageRecord.objects.filter(user_id=user_id).exists() or DailyRollup.objects.filter(user_id=user_id).exists()


# Periods --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end) on hour boundaries, shown in ``grain`` buckets ("hour" or "day")."""

    start: datetime
    end: datetime
    grain: str

    @property
    def previous(self) -> "Period":
        """The period of the same length just before this one."""
        return Period(self.start - (self.end - self.start), self.start, self.grain)

    def floor(self, moment: datetime) -> datetime:
        return hour_floor(moment) if self.grain == "hour" else day_floor(moment)

    def buckets(self) -> list[datetime]:
        step = HOUR if self.grain == "hour" else DAY
        out, moment = [], self.floor(self.start)
        while moment < self.end:
            out.append(moment)
            moment += step
        return out


RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}
DEFAULT_RANGE = "30d"
HOURLY_UP_TO = timedelta(days=7)


def period_for(name: str, now: datetime, date_from: date | None = None, date_to: date | None = None) -> Period:
    """A named range ending now (the current hour or day included), or whole custom days."""
    if name == "custom":
        start = _day_start(date_from)
        end = min(_day_start(date_to) + DAY, hour_floor(now) + HOUR)
        end = max(end, start + HOUR)
        return Period(start, end, "hour" if end - start <= HOURLY_UP_TO else "day")
    length = RANGES[name]
    if length <= HOURLY_UP_TO:
        end = hour_floor(now) + HOUR
        return Period(end - length, end, "hour")
    end = day_floor(now) + DAY
    return Period(end - length, min(end, hour_floor(now) + HOUR), "day")


def month_period(now: datetime) -> Period:
    return Period(month_start(now), hour_floor(now) + HOUR, "day")


# Dashboards -----------------------------------------------------------------------------


def month_totals(user_id: int) -> dict:
    """This calendar month's requests, tokens, spend and savings by mechanism (UTC)."""
    period = month_period(timezone.now())
    month = totals(user_id, period.start, period.end, latency=False)
    return {
        "requests": month.requests,
        "client_requests": month.client_requests,
        "prompt_tokens": month.prompt_tokens,
        "completion_tokens": month.completion_tokens,
        "spend_usd": round(float(month.cost_usd), 6),
        "baseline_usd": round(float(month.baseline_cost_usd), 6),
        "savings_usd": {
            "total": round(float(month.savings_usd), 6),
            "compression": round(float(month.savings_compression_usd), 6),
            "response_cache": round(float(month.savings_cache_usd), 6),
            "provider_cache": round(float(month.savings_provider_cache_usd), 6),
            "routing": round(float(month.savings_routing_usd), 6),
        },
    }


@dataclass
class Comparison:
    """A period in buckets, its totals, and the totals of the period of the same length before it."""

    period: Period
    buckets: list
    current: Totals
    previous: Totals


def per_bucket(period: Period, groups: dict[tuple, Totals]) -> list[tuple[datetime, Totals]]:
    """Every bucket of the period (empty ones too), each with the groups that fall in it."""
    buckets = {moment: Totals() for moment in period.buckets()}
    for (moment,), group in groups.items():
        bucket = buckets.get(period.floor(moment))
        if bucket is not None:
            bucket.merge(group)
    return list(buckets.items())


def compare(user_id: int, period: Period, filters: dict | None = None) -> Comparison:
    daily = period.grain == "day"
    series = usage(user_id, period.start, period.end, by=("bucket",), filters=filters, daily=daily, details=True)
    buckets = per_bucket(period, series)
    current = Totals()
    for _moment, bucket in buckets:
        current.merge(bucket)
    previous = totals(user_id, period.previous.start, period.previous.end, filters=filters, daily=daily)
    return Comparison(period, buckets, current, previous)


def per_dimension(user_id: int, period: Period, name: str, filters: dict | None = None) -> list[tuple[object, Totals]]:
    """Totals per value of one dimension (``model_used``, ``provider``, ``api_key_id``), most requests first."""
    groups = usage(user_id, period.start, period.end, by=(name,), filters=filters, daily=period.grain == "day", latency=False)
    return sorted(((key, group) for (key,), group in groups.items()), key=lambda item: (-item[1].requests, str(item[0])))


def dimension_choices(user_id: int) -> tuple[list[str], list[str]]:
    """The models and providers this account has used (for the filters)."""
    mark = watermark()
    pairs = set(DailyRollup.objects.filter(user_id=user_id).values_list("model_used", "provider").distinct())
    if mark is not None:
        hourly = HourlyRollup.objects.filter(user_id=user_id, hour__gte=day_floor(mark))
        pairs |= set(hourly.values_list("model_used", "provider").distinct())
    raw = UsageRecord.objects.filter(user_id=user_id)
    if mark is not None:
        raw = raw.filter(created__gte=hour_floor(mark))
    pairs |= set(raw.order_by().values_list("model_used", "provider").distinct())
    return sorted({m for m, _p in pairs if m}), sorted({p for _m, p in pairs if p})


# Usage log ------------------------------------------------------------------------------


def usage_log(user_id: int, *, api_key_id=None, model=None, provider=None, status=None, start=None, end=None):
    records = UsageRecord.objects.filter(user_id=user_id).select_related("api_key")
    records = records.annotate(savings_usd=F("baseline_cost_usd") - F("cost_usd"))
    if api_key_id:
        records = records.filter(api_key_id=api_key_id)
    if model:
        records = records.filter(model_used=model)
    if provider:
        records = records.filter(provider=provider)
    if status == "ok":
        records = records.filter(status__lt=400)
    elif status == "error":
        records = records.filter(failed_calls())  # as the dashboard counts them: a client that left is not a failure
    if start:
        records = records.filter(created__gte=start)
    if end:
        records = records.filter(created__lt=end)
    return records.order_by("-created", "-pk")


# Alerts ---------------------------------------------------------------------------------


def alert_settings(user) -> AlertSettings:
    """The account's alert settings, or the defaults (unsaved) when it never changed them."""
    return AlertSettings.objects.filter(user=user).select_related("user").first() or AlertSettings(user=user)


def key_budgets(user) -> dict[int, KeyBudget]:
    return {budget.api_key_id: budget for budget in KeyBudget.objects.filter(api_key__user=user).select_related("api_key")}


def recent_alerts(user, limit: int = 5) -> list[Alert]:
    return list(Alert.objects.filter(user=user).select_related("api_key")[:limit])


def hourly_history(user_id: int, hours: list[datetime]) -> dict[datetime, dict]:
    """Requests, errors and spend of the account in each of the given hours, from hourly rollups."""
    rows = (
        HourlyRollup.objects.filter(user_id=user_id, hour__in=hours)
        .values("hour")
        .annotate(requests=Sum("requests"), errors=Sum("errors"), cost_usd=Sum("cost_usd"), rows=Count("id"))
        .order_by()
    )
    return {row["hour"]: row for row in rows}


def first_rolled_hour(user_id: int) -> datetime | None:
    return HourlyRollup.objects.filter(user_id=user_id).order_by("hour").values_list("hour", flat=True).first()


def plan_usage(user, month: Totals) -> dict | None:
    """This month's requests against the plan's monthly quota, counted as the gateway counts them."""
    from billing.plans import plan_for

    limit = plan_for(user).monthly_requests
    if not limit:
        return None
    used = month.client_requests
    return {"used": used, "limit": limit, "percent": 100 * used / limit}


def banners(user, month: Totals) -> list[dict]:
    """What the cabinet warns about above the dashboards: the plan's quota and the account's budget."""
    found = []
    usage = plan_usage(user, month)
    if usage and usage["percent"] >= 80:
        found.append({"kind": "plan", "level": "bad" if usage["percent"] >= 100 else "warning", **usage})
    budget = alert_settings(user).monthly_budget_usd
    if budget and month.cost_usd >= budget:
        found.append({"kind": "budget", "level": "bad", "spend": month.cost_usd, "budget": budget})
    return found
