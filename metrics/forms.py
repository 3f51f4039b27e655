from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .selectors import DEFAULT_RANGE

RANGE_CHOICES = [
    ("24h", _("Last 24 hours")),
    ("7d", _("Last 7 days")),
    ("30d", _("Last 30 days")),
    ("90d", _("Last 90 days")),
    ("custom", _("Custom dates")),
]
STATUS_CHOICES = [("", _("Any status")), ("ok", _("Succeeded")), ("error", _("Failed"))]
MAX_CUSTOM_DAYS = 400
EARLIEST = date(2020, 1, 1)


def _choices(values, everything):
    return [("", everything), *((value, value) for value in values)]


class _UsageFilterForm(forms.Form):
    """Filters read from the query string. ``from`` and ``to`` are whole UTC days."""

    key = forms.IntegerField(label=_("AURA key"), required=False, min_value=1, widget=forms.Select)
    model = forms.ChoiceField(label=_("Model"), required=False)
    provider = forms.ChoiceField(label=_("Provider"), required=False)

    def __init__(self, data=None, *, keys=(), models=(), providers=()):
        super().__init__(data)
        # "from" is a Python keyword, so these two are added here rather than declared.
        self.fields["from"] = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
        self.fields["to"] = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
        self.fields["key"].widget.choices = [("", _("All keys")), *((key.pk, key.name) for key in keys)]
        self.fields["model"].choices = _choices(models, _("All models"))
        self.fields["provider"].choices = _choices(providers, _("All providers"))

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("from"), cleaned.get("to")
        for name in ("from", "to"):
            if cleaned.get(name) and not EARLIEST <= cleaned[name] <= timezone.now().date() + timedelta(days=1):
                self.add_error(name, _("Choose a date between %(first)s and today.") % {"first": EARLIEST.isoformat()})
        if start and end and start > end:
            self.add_error("to", _("The end date is before the start date."))
        elif start and end and (end - start).days > MAX_CUSTOM_DAYS:
            self.add_error("to", _("Choose at most %(days)s days.") % {"days": MAX_CUSTOM_DAYS})
        return cleaned

    def filters(self) -> dict:
        """The dimension filters, named as the rollup and usage record fields."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        names = {"key": "api_key_id", "model": "model_used", "provider": "provider"}
        return {field: data[name] for name, field in names.items() if data.get(name)}


class ChartFilterForm(_UsageFilterForm):
    range = forms.ChoiceField(label=_("Range"), choices=RANGE_CHOICES, required=False, initial=DEFAULT_RANGE)
    field_order = ["range", "from", "to", "key", "model", "provider"]

    def __init__(self, data=None, **kwargs):
        if data is not None and not data.get("range"):
            # Shown as chosen: dates alone mean custom dates, nothing means the default range.
            data = data.copy()
            data["range"] = "custom" if data.get("from") or data.get("to") else DEFAULT_RANGE
        super().__init__(data, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("range") == "custom" and not self.errors:
            if not cleaned.get("from") or not cleaned.get("to"):
                self.add_error("from", _("Custom dates need both a start and an end date."))
        return cleaned


class UsageLogForm(_UsageFilterForm):
    status = forms.ChoiceField(label=_("Status"), choices=STATUS_CHOICES, required=False)
    field_order = ["from", "to", "key", "model", "provider", "status"]


def _thresholds(value: str) -> list[int]:
    try:
        numbers = sorted({int(part) for part in value.replace(";", ",").split(",") if part.strip()})
    except ValueError:
        raise ValidationError(_("Enter whole percentages separated by commas, e.g. 50, 80, 100.")) from None
    if not numbers or len(numbers) > 10 or numbers[0] < 1 or numbers[-1] > 1000:
        raise ValidationError(_("Enter one to ten percentages between 1 and 1000."))
    return numbers


class AlertSettingsForm(forms.Form):
    plan_alerts = forms.BooleanField(
        label=_("Email me at 80% and 100% of my plan's monthly requests"),
        required=False,
    )
    budget_alerts = forms.BooleanField(label=_("Email me when spend reaches a budget threshold"), required=False)
    anomaly_alerts = forms.BooleanField(
        label=_("Email me about unusual spend, traffic or error spikes"),
        required=False,
        help_text=_("An hour is unusual when it is far above the same hour on each of the last 14 days."),
    )
    monthly_budget_usd = forms.DecimalField(
        label=_("Monthly budget for the account (USD)"),
        required=False,
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text=_("What your providers bill for calls through AURA in a calendar month. Leave empty for no budget."),
    )
    thresholds = forms.CharField(
        label=_("Budget thresholds (%)"),
        max_length=100,
        help_text=_("Comma-separated percentages of each budget, e.g. 50, 80, 100."),
    )
    recipients = forms.CharField(
        label=_("Send alerts to"),
        required=False,
        max_length=1000,
        help_text=_("Comma-separated email addresses. Leave empty to use your account's address."),
    )

    def __init__(self, data=None, *, keys=(), initial=None):
        super().__init__(data, initial=initial)
        self.keys = list(keys)
        for key in self.keys:
            self.fields[f"key_{key.pk}"] = forms.DecimalField(
                label=_("Monthly budget for the key “%(name)s” (USD)") % {"name": key.name},
                required=False,
                min_value=Decimal("0.01"),
                max_digits=12,
                decimal_places=2,
            )

    def clean_thresholds(self):
        return _thresholds(self.cleaned_data["thresholds"])

    def clean_recipients(self):
        addresses = [part.strip() for part in self.cleaned_data["recipients"].split(",") if part.strip()]
        if len(addresses) > 10:
            raise ValidationError(_("Enter at most ten addresses."))
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(_("“%(address)s” is not an email address.") % {"address": address}) from None
        return ", ".join(dict.fromkeys(addresses))

    def key_fields(self):
        return [self[f"key_{key.pk}"] for key in self.keys]

    def settings_fields(self):
        return [self[name] for name in ("plan_alerts", "budget_alerts", "anomaly_alerts", "monthly_budget_usd", "thresholds", "recipients")]

    def key_budgets(self) -> dict:
        return {key.pk: self.cleaned_data[f"key_{key.pk}"] for key in self.keys}
