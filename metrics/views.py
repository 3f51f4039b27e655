"""The cabinet's usage pages: overview, charts, request log and its CSV export, alerts."""

import csv
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import BooleanField, ExpressionWrapper
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from aura.spreadsheets import text_cell
from gateway.models import ApiKey

from . import charts, selectors, services
from .aggregate import Totals
from .forms import AlertSettingsForm, ChartFilterForm, UsageLogForm
from .models import failed_calls

PAGE_SIZE = 50

# The codes a usage record keeps, named for people; the CSV export keeps the codes, and a code not
# listed here is shown as it is.
CACHE_LABELS = {
    "hit": pgettext_lazy("response cache", "Hit"),
    "miss": pgettext_lazy("response cache", "Miss"),
    "bypass": pgettext_lazy("response cache", "Not used"),
}
ROUTE_LABELS = {
    "explicit": gettext_lazy("Model as asked"),
    "auto:cheapest-capable": gettext_lazy("Auto: cheapest capable"),
    "auto:balanced": gettext_lazy("Auto: balanced"),
    "auto:quality": gettext_lazy("Auto: quality"),
    "fallback": gettext_lazy("Fallback"),
    "fallback:cooldown": gettext_lazy("Fallback: provider cooling down"),
    "fallback:429": gettext_lazy("Fallback: provider rate limit"),
    "fallback:timeout": gettext_lazy("Fallback: provider timed out"),
    "fallback:5xx": gettext_lazy("Fallback: provider error"),
    "fallback:unreachable": gettext_lazy("Fallback: provider unreachable"),
    "fallback:error": gettext_lazy("Fallback: provider error"),
}
ERROR_LABELS = {
    "client_disconnected": gettext_lazy("Client left before the answer ended"),
    "stream_aborted": gettext_lazy("Stream ended early"),
    "stream_incomplete": gettext_lazy("Provider's stream cut short"),
    "stream_error": gettext_lazy("Stream failed"),
    "stream_unreadable": gettext_lazy("Provider's stream unreadable"),
    "server_stopping": gettext_lazy("AURA was restarting"),
    "upstream_rejected": gettext_lazy("Provider refused the call"),
    "upstream_timeout": gettext_lazy("Provider timed out"),
    "upstream_unreachable": gettext_lazy("Provider unreachable"),
    "upstream_invalid": gettext_lazy("Provider's answer unreadable"),
    "upstream_error": gettext_lazy("Provider error"),
    "provider_key_rejected": gettext_lazy("Provider key rejected"),
    "insufficient_quota": gettext_lazy("Provider quota used up"),
    "rate_limit_exceeded": gettext_lazy("Rate limit reached"),
    "concurrency_limit_exceeded": gettext_lazy("Too many calls at once"),
    "context_length_exceeded": gettext_lazy("Prompt too long for the model"),
    "model_not_allowed": gettext_lazy("Model not allowed for the key"),
    "invalid_api_key": gettext_lazy("Invalid AURA key"),
    "invalid_request_error": gettext_lazy("Invalid request"),
    "invalid_value": gettext_lazy("Invalid request"),
    "missing_required_parameter": gettext_lazy("Invalid request"),
    "string_above_max_length": gettext_lazy("Invalid request"),
    "internal_error": gettext_lazy("AURA internal error"),
}


def _get_api_key_for_user(request, pk) -> ApiKey:
    return get_object_or_404(ApiKey, pk=pk, user=request.user)


def _filter_form(request, form_class):
    """The filter form bound to the query string, the filters it reads, and the HTTP status its input deserves.

    Garbage is a 400: the page shows the form as sent, each error at its field, over the default
    view (no filters). A key id of another account is a 404.
    """
    models, providers = selectors.dimension_choices(request.user.pk)
    form = form_class(request.GET or None, keys=request.user.api_keys.all(), models=models, providers=providers)
    if not form.is_bound:
        return form, {}, 200
    if not form.is_valid():
        return form, {}, 400
    if form.cleaned_data.get("key"):
        _get_api_key_for_user(request, form.cleaned_data["key"])
    return form, form.cleaned_data, 200


def _month_banners(request, month: Totals | None = None) -> list[dict]:
    if month is None:
        period = selectors.month_period(timezone.now())
        month = selectors.totals(request.user.pk, period.start, period.end, latency=False)
    return selectors.banners(request.user, month)


@login_required
def dashboard(request):
    if not selectors.has_usage(request.user.pk):
        return render(request, "metrics/dashboard.html", {"overview": None})
    period = selectors.month_period(timezone.now())
    month = selectors.compare(request.user.pk, period)
    cost = charts.cost_chart(period, month.buckets)
    keys = {key.pk: key for key in request.user.api_keys.all()}
    budgets = selectors.key_budgets(request.user)
    by_key = [
        {"key": keys.get(key_id), "totals": totals, "spend": charts.fmt(totals.cost_usd, "usd"), "budget": budgets.get(key_id)}
        for key_id, totals in selectors.per_dimension(request.user.pk, period, "api_key_id")
    ]
    context = {
        "overview": True,
        "period": period,
        "cards": charts.cards(month.current, month.previous),
        "savings": charts.savings_breakdown(month.current),
        "errors": month.current.errors_by_class.most_common(5),
        "by_key": by_key,
        "alerts": selectors.recent_alerts(request.user),
        "banners": _month_banners(request, month.current),
        "charts": [cost],
        "chart_data": charts.data_island([cost]),
    }
    return render(request, "metrics/dashboard.html", context)


@login_required
def usage_charts(request):
    form, data, status = _filter_form(request, ChartFilterForm)
    range_name = data.get("range") or selectors.DEFAULT_RANGE
    period = selectors.period_for(range_name, timezone.now(), data.get("from"), data.get("to"))
    filters = form.filters()
    result = selectors.compare(request.user.pk, period, filters)
    by_model = selectors.per_dimension(request.user.pk, period, "model_used", filters)
    chart_list = charts.charts(period, result.buckets, result.current, by_model)
    context = {
        "form": form,
        "period": period,
        "range_name": range_name,
        "cards": charts.cards(result.current, result.previous),
        "charts": chart_list,
        "chart_data": charts.data_island(chart_list),
        "banners": _month_banners(request),
    }
    return render(request, "metrics/charts.html", context, status=status)


def _log_records(request):
    form, data, status = _filter_form(request, UsageLogForm)
    start = datetime.combine(data["from"], time(0), tzinfo=UTC) if data.get("from") else None
    end = datetime.combine(data["to"], time(0), tzinfo=UTC) + timedelta(days=1) if data.get("to") else None
    records = selectors.usage_log(
        request.user.pk,
        api_key_id=data.get("key"),
        model=data.get("model"),
        provider=data.get("provider"),
        status=data.get("status"),
        start=start,
        end=end,
    )
    return form, status, records


@login_required
def usage_log(request):
    form, status, records = _log_records(request)
    records = records.annotate(failed=ExpressionWrapper(failed_calls(), output_field=BooleanField()))
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    for record in page:
        record.cache_label = CACHE_LABELS.get(record.cache_status, record.cache_status)
        record.route_label = ROUTE_LABELS.get(record.route_reason, record.route_reason)
        record.error_label = ERROR_LABELS.get(record.error_class, record.error_class)
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode() if status == 200 else "",
        "banners": _month_banners(request),
    }
    return render(request, "metrics/usage.html", context, status=status)


EXPORT_COLUMNS = [
    ("created", "time_utc"),
    ("api_key__name", "key"),
    ("model_requested", "model_requested"),
    ("model_used", "model_used"),
    ("provider", "provider"),
    ("status", "status"),
    ("error_class", "error_class"),
    ("prompt_tokens", "prompt_tokens"),
    ("cached_tokens", "cached_tokens"),
    ("completion_tokens", "completion_tokens"),
    ("tokens_original", "tokens_original"),
    ("tokens_sent", "tokens_sent"),
    ("cost_usd", "cost_usd"),
    ("baseline_cost_usd", "baseline_cost_usd"),
    ("latency_ms", "latency_ms"),
    ("cache_status", "cache_status"),
    ("route_reason", "route_reason"),
    ("ip", "ip"),
    ("request_id", "request_id"),
]


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    if isinstance(value, str):
        return text_cell(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, Decimal):
        return format(value, "f")  # 0.00000000, not str()'s 0E-8
    return value


def _csv_rows(records):
    writer = csv.writer(_Echo())
    yield writer.writerow([header for _field, header in EXPORT_COLUMNS] + ["savings_usd"])
    fields = [field for field, _header in EXPORT_COLUMNS]
    for row in records.values_list(*fields).iterator(chunk_size=2000):
        values = dict(zip(fields, row, strict=True))
        savings = values["baseline_cost_usd"] - values["cost_usd"]
        yield writer.writerow([_cell(value) for value in row] + [_cell(savings)])


@login_required
def usage_export(request):
    form, status, records = _log_records(request)
    if status != 200:
        return render(request, "metrics/usage.html", {"form": form, "page": None}, status=status)
    response = StreamingHttpResponse(_csv_rows(records), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="aura-usage-{timezone.now():%Y%m%d-%H%M}.csv"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
def notifications(request):
    page = Paginator(request.user.alerts.select_related("api_key"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "metrics/notifications.html", {"page": page, "banners": _month_banners(request)})


SETTINGS_FIELDS = ("plan_alerts", "budget_alerts", "anomaly_alerts", "monthly_budget_usd", "thresholds", "recipients")


@login_required
def alert_settings(request):
    prefs = selectors.alert_settings(request.user)
    keys = request.user.api_keys.filter(revoked__isnull=True)
    budgets = selectors.key_budgets(request.user)
    initial = {
        "plan_alerts": prefs.plan_alerts,
        "budget_alerts": prefs.budget_alerts,
        "anomaly_alerts": prefs.anomaly_alerts,
        "monthly_budget_usd": prefs.monthly_budget_usd,
        "thresholds": ", ".join(str(t) for t in prefs.thresholds),
        "recipients": prefs.recipients,
        **{f"key_{key_id}": budget.monthly_budget_usd for key_id, budget in budgets.items()},
    }
    form = AlertSettingsForm(request.POST if request.method == "POST" else None, keys=keys, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        services.alert_settings_save(
            user=request.user,
            key_budgets=form.key_budgets(),
            **{name: data[name] for name in SETTINGS_FIELDS},
        )
        messages.success(request, _("Your alert settings are saved."))
        return redirect("alert_settings")
    return render(request, "metrics/alert_settings.html", {"form": form, "default_recipient": request.user.email})
