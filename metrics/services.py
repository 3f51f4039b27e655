"""Writes of the metrics app: usage records, rollups, alert settings and alerts."""

import functools
import logging
import statistics
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.cache import cache
from django.db import connection, models, transaction
from django.urls import reverse
from django.utils import timezone, translation

from aura.emails import send_email
from aura.http import normal_ip

from . import charts, selectors
from .aggregate import DIMENSIONS, ROLLUP_FIELDS, Totals, hour_floor, raw_rows
from .models import Alert, AlertSettings, DailyRollup, HourlyRollup, KeyBudget, RollupWatermark, UsageRecord

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


_MONEY_MAX = Decimal("999999.99999999")  # numeric(14, 8)


def _text(limit: int | None):
    def clean(value):
        if not isinstance(value, str):
            return value
        if not value.isascii():
            value = value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"
        if "\x00" in value:
            value = value.replace("\x00", "")
        return value[:limit] if limit and len(value) > limit else value

    return clean


def _count(maximum: int):
    def clean(value):
        if type(value) is int and 0 <= value <= maximum:
            return value
        if value is None:
            return None
        try:
            return min(max(int(value), 0), maximum)
        except (TypeError, ValueError, OverflowError):
            return 0

    return clean


def _money(value):
    if value is None:
        return None
    try:
        value = value if type(value) is Decimal else Decimal(value)
        return value if -_MONEY_MAX <= value <= _MONEY_MAX else min(max(value, -_MONEY_MAX), _MONEY_MAX)
    except (ArithmeticError, TypeError, ValueError):  # NaN, garbage
        return Decimal(0)


def _address(value):
    return None if value is None else normal_ip(value)


def _cleaner(field):
    if isinstance(field, models.GenericIPAddressField):
        return _address
    if isinstance(field, models.PositiveSmallIntegerField):
        return _count(32767)
    if isinstance(field, models.PositiveIntegerField):
        return _count(2**31 - 1)
    if isinstance(field, models.DecimalField):
        return _money
    if isinstance(field, (models.CharField, models.TextField)):
        return _text(field.max_length)
    return None


_CLEANERS = {}
for _field in UsageRecord._meta.concrete_fields:
    if (_clean := _cleaner(_field)) is not None:
        _CLEANERS[_field.name] = _CLEANERS[_field.attname] = _clean


def usage_fields_clean(fields: dict) -> dict:
    """The fields as every column accepts them, whatever a client or an upstream sent: text without
    NUL or lone surrogates and within its length, counts as whole numbers in range, money within
    the column, an IP address or nothing. One odd value must not cost a record (or, spooled, a batch)."""
    cleaners = _CLEANERS
    return {name: cleaners[name](value) if name in cleaners else value for name, value in fields.items()}


def usage_record(**fields) -> UsageRecord:
    """How the gateway hands usage to metrics: one record per upstream call, written once.

    On PostgreSQL the row is committed without waiting for the WAL flush (``synchronous_commit``
    off for this one statement): the commit is visible at once and the row is lost only if
    PostgreSQL itself crashes within a fraction of a second. That wait was the largest part of
    AURA's per-call overhead (2.8 ms of fdatasync here, against 0.24 ms for the whole INSERT).
    Every other write keeps full durability.
    """
    record = UsageRecord(**usage_fields_clean(fields))
    if connection.vendor != "postgresql":
        record.save(force_insert=True)
        return record
    fields_ = _usage_insert_fields()
    values = [field.get_db_prep_save(field.pre_save(record, True), connection) for field in fields_]
    with connection.cursor() as cursor:
        cursor.execute(_usage_insert_sql(), values)
        record.pk = cursor.fetchone()[0]
    return record


def _usage_insert_fields():
    return [f for f in UsageRecord._meta.concrete_fields if not f.primary_key]


@functools.cache
def _usage_insert_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in _usage_insert_fields())
    placeholders = ", ".join(["%s"] * len(_usage_insert_fields()))
    # The FROM clause runs set_config first, in the statement's own transaction (is_local = true).
    return (
        f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({columns}) SELECT {placeholders} "  # noqa: S608 -- names from the model; values are parameters
        f"FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed RETURNING {quote(UsageRecord._meta.pk.column)}"
    )


# Rollups ------------------------------------------------------------------------------

# Raw usage records live 14 days (privacy policy; purged by accounts.retention). An hour older
# than that may have lost some of its records, and re-rolling it would shrink its rollups.
RAW_RECORD_DAYS = 14
# Every refresh re-rolls the last hours, so records written late land in their hour.
REFRESH_HOURS = 3
# A refresh that has fallen behind catches up this many hours per task, then re-queues.
CATCH_UP_HOURS = 48
_LOCK_HOURLY, _LOCK_DAILY = 0x6D01, 0x6D02


class RollupWindowClosed(ValueError):
    pass


def _retention_floor(now: datetime) -> datetime:
    return hour_floor(now - timedelta(days=RAW_RECORD_DAYS)) + HOUR


def _lock(namespace: int, number: int) -> None:
    """Serialise writers of one window: two runs at once would each insert the rows the other deleted.

    SQLite needs nothing: AURA's transactions there begin IMMEDIATE, taking the write lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [namespace, number])


def _rollup_fields(row: dict) -> dict:
    return {name: row[name] for name in (*DIMENSIONS, *ROLLUP_FIELDS)}


def rollup_hour(*, hour: datetime, backfill: bool = False) -> set[int]:
    """Recompute one hour of hourly rollups from the raw records and replace that hour's rows.

    Idempotent: running it again gives the same rows, with any records written late folded in.
    Returns the ids of the accounts that had or now have rows in the hour. Hours older than the
    raw records' life are refused unless ``backfill`` (the raw records are known to be whole).
    """
    hour = hour_floor(hour)
    if not backfill and hour < _retention_floor(timezone.now()):
        raise RollupWindowClosed(f"the raw records of {hour:%Y-%m-%d %H}h may be purged already")
    with transaction.atomic():
        _lock(_LOCK_HOURLY, int(hour.timestamp()) // 3600)
        rows = raw_rows(UsageRecord.objects.filter(created__gte=hour, created__lt=hour + HOUR))
        existing = HourlyRollup.objects.filter(hour=hour)
        users = set(existing.values_list("user_id", flat=True).distinct())
        existing.delete()
        HourlyRollup.objects.bulk_create([HourlyRollup(hour=hour, **_rollup_fields(row)) for row in rows], batch_size=1000)
    return users | {row["user_id"] for row in rows}


def rollup_day(*, day, user_ids=None) -> int:
    """Recompute one day of daily rollups from its hourly rollups (for ``user_ids``, or everyone)."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    with transaction.atomic():
        _lock(_LOCK_DAILY, day.toordinal())
        hourly = HourlyRollup.objects.filter(hour__gte=start, hour__lt=start + DAY)
        daily = DailyRollup.objects.filter(day=day)
        if user_ids is not None:
            hourly, daily = hourly.filter(user_id__in=user_ids), daily.filter(user_id__in=user_ids)
        groups: dict[tuple, Totals] = defaultdict(Totals)
        for row in hourly.values(*DIMENSIONS, *ROLLUP_FIELDS).iterator(chunk_size=2000):
            groups[tuple(row[name] for name in DIMENSIONS)].add(row)
        daily.delete()
        DailyRollup.objects.bulk_create(
            [
                DailyRollup(
                    day=day,
                    **dict(zip(DIMENSIONS, key, strict=True)),
                    **{name: getattr(totals, name) for name in ROLLUP_FIELDS},
                )
                for key, totals in groups.items()
            ],
            batch_size=1000,
        )
    return len(groups)


def _advance_watermark(*, first: datetime, until: datetime) -> None:
    """Move the watermark to ``until`` if the rolled range joins what was rolled before."""
    with transaction.atomic():
        current = RollupWatermark.objects.select_for_update().filter(pk=1).first()
        if current is None:
            if UsageRecord.objects.filter(created__lt=first).exists() and first > _retention_floor(timezone.now()):
                return  # older records were never rolled up: the dashboards keep reading them raw
            RollupWatermark.objects.get_or_create(pk=1, defaults={"until": until})
        elif current.until >= first and until > current.until:
            current.until = until
            current.save(update_fields=["until"])


def rollup_range(*, start: datetime, end: datetime, backfill: bool = False) -> None:
    """Roll up every hour touching [start, end), then the days those hours belong to."""
    started = timezone.now()
    first, stop = hour_floor(start), min(hour_floor(end - timedelta(microseconds=1)) + HOUR, hour_floor(started) + HOUR)
    touched: dict = defaultdict(set)
    hour = first
    while hour < stop:
        touched[hour.date()] |= rollup_hour(hour=hour, backfill=backfill)
        hour += HOUR
    for day, users in sorted(touched.items()):
        if users:
            rollup_day(day=day, user_ids=users)
    _advance_watermark(first=first, until=min(stop, started))


def rollups_refresh(*, now: datetime) -> bool:
    """Re-roll the last hours and anything since the last complete run. True when more is left to catch up."""
    recent = hour_floor(now) - (REFRESH_HOURS - 1) * HOUR
    mark = selectors.watermark()
    if mark is None:
        oldest = UsageRecord.objects.order_by("created").values_list("created", flat=True).first()
        start = min(hour_floor(oldest), recent) if oldest else recent
    else:
        start = min(hour_floor(mark), recent)
    start = max(start, _retention_floor(now))
    end = hour_floor(now) + HOUR
    more = end - start > CATCH_UP_HOURS * HOUR
    rollup_range(start=start, end=start + CATCH_UP_HOURS * HOUR if more else end)
    return more


# Alert settings -----------------------------------------------------------------------


def alert_settings_save(*, user, key_budgets: dict, **fields) -> AlertSettings:
    """Save the account's alert choices and its keys' budgets (``{key id: amount or None}``), then re-check its alerts."""
    from .tasks import check_user_alerts_task

    earlier = AlertSettings.objects.filter(user=user).first()
    asked = {address.lower() for address in earlier.pending_recipients()} if earlier else set()
    with transaction.atomic():
        prefs, _created = AlertSettings.objects.update_or_create(user=user, defaults=fields)
        listed = {address.lower() for address in prefs.listed_recipients()}
        if any(address not in listed for address in prefs.confirmed_recipients):  # taken off the list: asked again if put back
            prefs.confirmed_recipients = [address for address in prefs.confirmed_recipients if address in listed]
            prefs.save(update_fields=["confirmed_recipients"])
        for address in prefs.pending_recipients():
            if address.lower() not in asked:  # asked once per listing: saving again sends nothing new
                transaction.on_commit(lambda address=address: recipient_confirmation_send(user=user, address=address), robust=True)
        for key_id, amount in key_budgets.items():
            if amount is None:
                KeyBudget.objects.filter(api_key_id=key_id, api_key__user=user).delete()
            else:
                KeyBudget.objects.update_or_create(api_key_id=key_id, defaults={"monthly_budget_usd": amount})
        check_user_alerts_task.delay_on_commit(user.pk)
    return prefs


RECIPIENT_SALT = "aura.metrics.alert-recipient"
RECIPIENT_LINK_DAYS = 7


RECIPIENT_ASKS_PER_DAY = 20  # per account: AURA's mail is not a way to write to any address at will


def recipient_confirmation_send(*, user, address: str) -> None:
    """Ask ``address`` whether it wants this account's alerts, with a link that says yes."""
    asked = f"alerts:asked:{user.pk}:{timezone.now():%Y-%m-%d}"
    cache.add(asked, 0, 86400)
    if cache.incr(asked) > RECIPIENT_ASKS_PER_DAY:
        log.warning("account %s asked more than %s alert recipients today: not asked", user.pk, RECIPIENT_ASKS_PER_DAY)
        return
    token = signing.dumps({"u": user.pk, "a": address.lower()}, salt=RECIPIENT_SALT)
    link = settings.SITE_URL + reverse("alert_recipient_confirm", args=[token])
    context = {"user": user, "account": user.email, "address": address, "link": link, "days": RECIPIENT_LINK_DAYS}
    send_email("alert-recipient-confirm", to=address, context=context, language=user.language)


def recipient_named(*, token: str) -> tuple[AlertSettings, str] | None:
    """The account and address a confirmation link names; None for a link that is not valid, has
    expired, or names an address the account no longer lists."""
    try:
        data = signing.loads(token, salt=RECIPIENT_SALT, max_age=RECIPIENT_LINK_DAYS * 86400)
    except signing.BadSignature:
        return None
    prefs = AlertSettings.objects.filter(user_id=data.get("u")).select_related("user").first()
    address = str(data.get("a", ""))
    if prefs is None or address not in {listed.lower() for listed in prefs.listed_recipients()}:
        return None
    return prefs, address


def recipient_confirm(*, token: str) -> tuple[AlertSettings, str] | None:
    """``recipient_named``, the address now confirmed (under a row lock: two confirmations, or one and
    a save of the settings, do not undo each other)."""
    with transaction.atomic():
        named = recipient_named(token=token)
        if named is None:
            return None
        prefs = AlertSettings.objects.select_for_update().select_related("user").get(pk=named[0].pk)
        address = named[1]
        if address not in prefs.confirmed_recipients:
            prefs.confirmed_recipients = [*prefs.confirmed_recipients, address]
            prefs.save(update_fields=["confirmed_recipients", "updated"])
    return prefs, address


# Alerts -------------------------------------------------------------------------------

PLAN_THRESHOLDS = (80, 100)
# Anomalies: the hour against the same hour of each of the last 14 days.
SPIKE_HISTORY_DAYS = 14
SPIKE_MIN_HISTORY_DAYS = 7
SPIKE_MADS = 6
# Far above means more than six MADs above the median and at least double it, and never for
# less than these amounts in an hour (a small account's noise is not news).
SPIKE_MIN_REQUESTS = 100
SPIKE_MIN_COST = Decimal("1.00")
ERROR_SPIKE_RATE = 0.25
ERROR_SPIKE_MIN_REQUESTS = 20
ALERTS_BATCH = 200


def _money(value) -> float:
    return round(float(value), 4)


def _raise(user, kind: str, period: str, details: dict, *, email: str = "pending", api_key=None, last_hour=None) -> Alert | None:
    """Record an alert once: None if this one was raised before."""
    alert, created = Alert.objects.get_or_create(
        user=user,
        kind=kind,
        period=period,
        defaults={"details": details, "email": email, "api_key": api_key, "last_hour": last_hour},
    )
    return alert if created else None


def _thresholds(user, kind, period_prefix, spend, budget, thresholds, **extra) -> list[Alert]:
    crossed = [t for t in sorted(set(thresholds)) if spend >= budget * Decimal(t) / 100]
    raised = []
    for threshold in crossed:
        details = {"threshold": threshold, "spend": _money(spend), "budget": _money(budget)}
        if extra.get("api_key") is not None:
            details["key_name"] = extra["api_key"].name
        # Crossing several thresholds at once emails only the highest.
        email = "pending" if threshold == crossed[-1] else "skipped"
        raised.append(_raise(user, kind, f"{period_prefix}:{threshold}:{budget}", details, email=email, **extra))
    return raised


def _check_plan(user, month: Totals, period: str) -> list[Alert]:
    usage = selectors.plan_usage(user, month)
    if usage is None:
        return []
    crossed = [t for t in PLAN_THRESHOLDS if usage["percent"] >= t]
    return [
        _raise(
            user,
            "plan_limit",
            f"{period}:{threshold}",
            {"threshold": threshold, "used": usage["used"], "limit": usage["limit"]},
            email="pending" if threshold == crossed[-1] else "skipped",
        )
        for threshold in crossed
    ]


def _check_budgets(user, prefs: AlertSettings, month: Totals, period: selectors.Period) -> list[Alert]:
    raised = []
    label = f"{period.start:%Y-%m}"
    if prefs.monthly_budget_usd:
        raised += _thresholds(user, "budget", label, month.cost_usd, prefs.monthly_budget_usd, prefs.thresholds)
    budgets = selectors.key_budgets(user)
    if budgets:
        spend = {key_id: totals.cost_usd for key_id, totals in selectors.per_dimension(user.pk, period, "api_key_id")}
        for key_id, budget in budgets.items():
            raised += _thresholds(
                user,
                "key_budget",
                f"{label}:key{key_id}",
                spend.get(key_id, Decimal(0)),
                budget.monthly_budget_usd,
                prefs.thresholds,
                api_key=budget.api_key,
            )
    return raised


def _median_mad(values: list) -> tuple[float, float]:
    median = statistics.median(values)
    return median, statistics.median([abs(v - median) for v in values])


def _spike_limit(values: list, minimum: float) -> tuple[float, float]:
    """The usual value (median) and the value above which an hour is a spike."""
    median, mad = _median_mad(values)
    return median, max(median + SPIKE_MADS * mad, 2 * median, minimum)


def _episode(user, kind: str, hour: datetime, details: dict) -> Alert | None:
    """An anomalous hour: a new episode (alerted) unless the previous or this hour already belongs to one."""
    ongoing = Alert.objects.filter(user=user, kind=kind, last_hour__gte=hour - HOUR).order_by("-last_hour").first()
    if ongoing is not None:
        if hour > ongoing.last_hour:
            ongoing.last_hour = hour
            ongoing.save(update_fields=["last_hour"])
        return None
    return _raise(user, kind, f"{hour:%Y-%m-%dT%H}", {"hour": hour.isoformat(), **details}, last_hour=hour)


def _check_anomalies(user, now: datetime) -> list[Alert]:
    """The previous (complete) and the current hour against the same hours of the last 14 days."""
    current = hour_floor(now)
    hours = [current - HOUR, current]
    groups = selectors.usage(user.pk, hours[0], hours[-1] + HOUR, by=("bucket",), daily=False, latency=False, details=True)
    recent = dict(selectors.per_bucket(selectors.Period(hours[0], hours[-1] + HOUR, "hour"), groups))
    history = selectors.hourly_history(user.pk, [h - d * DAY for h in hours for d in range(1, SPIKE_HISTORY_DAYS + 1)])
    first = selectors.first_rolled_hour(user.pk)
    raised = []
    for hour in hours:
        seen = recent[hour]
        past = [history.get(hour - d * DAY) for d in range(1, SPIKE_HISTORY_DAYS + 1)]
        if first is not None and first <= hour - SPIKE_MIN_HISTORY_DAYS * DAY:
            raised.append(_usage_spike(user, hour, seen, past))
        if seen.requests >= ERROR_SPIKE_MIN_REQUESTS and seen.error_rate > ERROR_SPIKE_RATE:
            raised.append(_error_spike(user, hour, seen, past))
    return raised


def _usage_spike(user, hour: datetime, seen: Totals, past: list) -> Alert | None:
    usual_requests, requests_limit = _spike_limit([p["requests"] if p else 0 for p in past], SPIKE_MIN_REQUESTS)
    usual_cost, cost_limit = _spike_limit([float(p["cost_usd"]) if p else 0.0 for p in past], float(SPIKE_MIN_COST))
    measured = (("requests", seen.requests, requests_limit), ("cost", float(seen.cost_usd), cost_limit))
    over = [name for name, value, limit in measured if value > limit]
    if not over:
        return None
    details = {
        "over": over,
        "requests": seen.requests,
        "usual_requests": usual_requests,
        "cost": _money(seen.cost_usd),
        "usual_cost": round(usual_cost, 4),
    }
    return _episode(user, "usage_spike", hour, details)


def _error_spike(user, hour: datetime, seen: Totals, past: list) -> Alert | None:
    """Over a quarter of the hour's calls failed, well above the account's usual error rate at that hour."""
    rates = [p["errors"] / p["requests"] for p in past if p and p["requests"]]
    usual_rate, mad = _median_mad(rates) if rates else (0.0, 0.0)
    if seen.error_rate <= usual_rate + SPIKE_MADS * mad:
        return None
    details = {
        "requests": seen.requests,
        "errors": seen.errors,
        "rate": round(seen.error_rate, 4),
        "usual_rate": round(usual_rate, 4),
        "classes": seen.errors_by_class.most_common(3),
    }
    return _episode(user, "error_spike", hour, details)


def alerts_check(*, user, now: datetime) -> list[Alert]:
    """Raise the account's due alerts (each once per month, threshold or episode) and email the new ones."""
    from .tasks import send_alert_task

    prefs = selectors.alert_settings(user)
    period = selectors.month_period(now)
    month = selectors.totals(user.pk, period.start, period.end, latency=False) if prefs.plan_alerts or prefs.budget_alerts else None
    raised: list = []
    with transaction.atomic():
        if prefs.plan_alerts:
            raised += _check_plan(user, month, f"{period.start:%Y-%m}")
        if prefs.budget_alerts:
            raised += _check_budgets(user, prefs, month, period)
        if prefs.anomaly_alerts:
            raised += _check_anomalies(user, now)
        new = [alert for alert in raised if alert is not None]
        for alert in new:
            if alert.email == "pending":
                send_alert_task.delay_on_commit(alert.pk)
    return new


def alerts_check_active(*, now: datetime, after_user_id: int = 0) -> tuple[int, bool]:
    """Check the alerts of one batch of accounts with usage in the last hours, in id order.

    Returns the last id checked and whether a full batch came back (more may be left).
    """
    since = hour_floor(now) - (REFRESH_HOURS - 1) * HOUR
    ids = list(
        HourlyRollup.objects.filter(hour__gte=since, user_id__gt=after_user_id)
        .order_by("user_id")
        .values_list("user_id", flat=True)
        .distinct()[:ALERTS_BATCH]
    )
    users = get_user_model().objects.filter(pk__in=ids, is_active=True, deletion_requested_at__isnull=True).order_by("pk")
    for user in users:
        try:
            alerts_check(user=user, now=now)
        except Exception:
            # One account's failure must not hold back everyone else's alerts.
            log.exception("alerts of account %s not checked", user.pk)
    return (ids[-1] if ids else after_user_id), len(ids) == ALERTS_BATCH


EMAIL_TEMPLATES = {
    "plan_limit": "alert-plan-limit",
    "budget": "alert-budget",
    "key_budget": "alert-budget",
    "usage_spike": "alert-usage-spike",
    "error_spike": "alert-error-spike",
}


def _budget_figures(alert: Alert) -> dict:
    """The spend as the dashboard writes it (a sub-cent spend keeps four decimals: $0.0013, not $0.00) and the
    share of the budget it is, which the threshold passed need not be."""
    spend, budget = alert.details["spend"], alert.details["budget"]
    with translation.override(alert.user.language):
        return {"spend": charts.fmt(spend, "usd"), "share": charts.fmt(spend / budget, "percent")}


def alert_send(*, alert: Alert) -> None:
    """Email an alert to each recipient once: a retry after a failure skips those already sent."""
    if alert.email != "pending":
        return
    user = alert.user
    if not user.is_active or user.deletion_requested_at is not None:
        alert.email = "skipped"
        alert.save(update_fields=["email"])
        return
    context = {
        "user": user,
        "alert": alert,
        "details": alert.details,
        "LANGUAGE_CODE": user.language,
        "settings_url": settings.SITE_URL + reverse("alert_settings"),
        "dashboard_url": settings.SITE_URL + reverse("dashboard"),
        "billing_url": settings.SITE_URL + reverse("billing"),
        "errors_url": settings.SITE_URL + reverse("usage_log") + "?status=error",
        **(_budget_figures(alert) if alert.kind in ("budget", "key_budget") else {}),
    }
    for address in selectors.alert_settings(user).recipient_list():
        if address in alert.sent_to:
            continue
        send_email(EMAIL_TEMPLATES[alert.kind], to=address, context=context, language=user.language)
        alert.sent_to.append(address)
        alert.save(update_fields=["sent_to"])
    alert.email, alert.sent_at = "sent", timezone.now()
    alert.save(update_fields=["email", "sent_at"])
