from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _


def failed_calls() -> models.Q:
    """The records that count as errors: a status of 400 or more, except a client that left before its
    answer ended (499 client_disconnected). That one was the caller's choice: counted, it raised the
    dashboard's error rate and the error-spike alert, and made the provider look unreliable to routing."""
    return models.Q(status__gte=400) & ~models.Q(error_class="client_disconnected")


class UsageRecord(models.Model):
    """One upstream call: who, which model, tokens, time and money. Never any content."""

    request_id = models.CharField(max_length=40, unique=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    api_key = models.ForeignKey("gateway.ApiKey", on_delete=models.SET_NULL, null=True, related_name="usage_records")
    endpoint = models.CharField(max_length=16, default="chat")
    model_requested = models.CharField(max_length=120)
    model_used = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=16, blank=True)
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField()
    error_class = models.CharField(max_length=40, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    tokens_counted = models.BooleanField(default=False, help_text="AURA counted the tokens; the provider reported none")
    tokens_original = models.PositiveIntegerField(default=0)
    tokens_sent = models.PositiveIntegerField(default=0)
    ttfb_ms = models.PositiveIntegerField(null=True)
    latency_ms = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    # What the call would have cost without AURA: the requested (or reference) model, the
    # uncompressed prompt, no response cache, no provider caching AURA added.
    baseline_cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    savings_compression_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    savings_cache_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    savings_provider_cache_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    savings_routing_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    cache_status = models.CharField(max_length=8, default="bypass")
    route_reason = models.CharField(max_length=40, default="explicit")
    compression = models.CharField(max_length=12, default="off")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "-created"])]

    def __str__(self):
        return f"{self.request_id} {self.model_requested} {self.status}"


class AnonymousAggregate(models.Model):
    """Usage of all accounts together, per day, provider and model: no link to any account.

    Accounts that restricted processing or objected are left out. Kept 12 months.
    """

    day = models.DateField()
    provider = models.CharField(max_length=16)
    model = models.CharField(max_length=120)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    tokens_saved = models.BigIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    latency_ms_total = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["day", "provider", "model"], name="metrics_anonymous_unique_day")]

    def __str__(self):
        return f"{self.day} {self.provider}/{self.model}"


# Rollups ------------------------------------------------------------------------------

# Upper bounds (ms, exclusive) of the latency histogram's buckets, spaced by √2; one more bucket
# holds everything slower. Fixed forever: rollups of different times merge bucket by bucket, so
# changing these would make old and new histograms incomparable.
LATENCY_BOUNDS_MS = (
    10, 14, 20, 28, 40, 57, 80, 113, 160, 226, 320, 453, 640, 905, 1280, 1810,
    2560, 3620, 5120, 7241, 10240, 14482, 20480, 28963, 40960, 57926, 81920, 115852,
)  # fmt: skip


def empty_histogram() -> list[int]:
    return [0] * (len(LATENCY_BOUNDS_MS) + 1)


class Rollup(models.Model):
    """Usage of one account, AURA key, model and provider over one bucket of time.

    Every field is a sum or a count, so rollups merge by adding (the latency histogram and
    the dictionaries add element by element): percentiles come from merged histograms.
    """

    # The (user, hour|day) index serves every query by user: no index of its own.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    api_key = models.ForeignKey("gateway.ApiKey", on_delete=models.SET_NULL, null=True, related_name="+")
    model_used = models.CharField(max_length=120, blank=True)
    provider = models.CharField(max_length=16, blank=True)
    requests = models.PositiveIntegerField(default=0)
    # Failed attempts that a fallback or a retry followed: upstream calls, not client requests.
    failed_attempts = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    errors_by_class = models.JSONField(default=dict)
    prompt_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    tokens_original = models.BigIntegerField(default=0)
    tokens_sent = models.BigIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    baseline_cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    savings_compression_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    savings_cache_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    savings_provider_cache_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    savings_routing_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    fallbacks = models.PositiveIntegerField(default=0)
    route_reasons = models.JSONField(default=dict)
    latency_histogram = models.JSONField(default=empty_histogram)

    class Meta:
        abstract = True

    @property
    def tokens_saved(self) -> int:
        """Prompt tokens compression removed."""
        return self.tokens_original - self.tokens_sent


class HourlyRollup(Rollup):
    hour = models.DateTimeField()

    class Meta:
        # One row per (user, api_key, model_used, provider, hour): rollup_hour() replaces an hour
        # whole under a lock. Not a unique constraint: deleting a key nulls its rows' api_key,
        # which may then equal another row's.
        indexes = [models.Index(fields=["user", "hour"]), models.Index(fields=["hour"])]

    def __str__(self):
        return f"{self.user_id} {self.hour:%Y-%m-%d %H}h {self.provider}/{self.model_used}"


class DailyRollup(Rollup):
    day = models.DateField()

    class Meta:
        # One row per (user, api_key, model_used, provider, day), as for hourly rollups.
        indexes = [models.Index(fields=["user", "day"]), models.Index(fields=["day"])]

    def __str__(self):
        return f"{self.user_id} {self.day} {self.provider}/{self.model_used}"


class RollupWatermark(models.Model):
    """One row (pk 1): every usage record created before ``until`` is in the rollups (late ones aside).

    Dashboards read rollups before the hour of ``until`` and raw records from it on, so they
    are live without scanning much raw data; no row means nothing is rolled up yet.
    """

    until = models.DateTimeField()

    def __str__(self):
        return f"rollups complete until {self.until:%Y-%m-%d %H:%M:%S}"


# Alerts -------------------------------------------------------------------------------


def default_thresholds() -> list[int]:
    return [50, 80, 100]


class AlertSettings(models.Model):
    """Which alerts an account gets, its monthly budget and who is emailed."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_settings")
    plan_alerts = models.BooleanField(_("plan limit alerts"), default=True)
    budget_alerts = models.BooleanField(_("budget alerts"), default=True)
    anomaly_alerts = models.BooleanField(_("anomaly alerts"), default=True)
    monthly_budget_usd = models.DecimalField(_("monthly budget (USD)"), max_digits=12, decimal_places=2, null=True, blank=True)
    thresholds = models.JSONField(_("budget thresholds (%)"), default=default_thresholds)
    # Comma-separated addresses; empty means the account's own email address.
    recipients = models.CharField(_("recipients"), max_length=1000, blank=True)
    # Addresses (lowercased) whose owners confirmed, from an emailed link, that they want this
    # account's alerts: AURA sends an account's spend to no address that did not ask for it.
    confirmed_recipients = models.JSONField(default=list, blank=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"alert settings of {self.user_id}"

    def listed_recipients(self) -> list[str]:
        return [address.strip() for address in self.recipients.split(",") if address.strip()]

    def is_confirmed(self, address: str) -> bool:
        return address.lower() == self.user.email.lower() or address.lower() in self.confirmed_recipients

    def pending_recipients(self) -> list[str]:
        """Listed addresses whose owners have not confirmed yet: no alert goes to them."""
        return [address for address in self.listed_recipients() if not self.is_confirmed(address)]

    def recipient_list(self) -> list[str]:
        """Where alerts go: the listed addresses that are confirmed; the account's own while none is."""
        return [address for address in self.listed_recipients() if self.is_confirmed(address)] or [self.user.email]


class KeyBudget(models.Model):
    """An optional monthly spend budget for one AURA key; alerts use the account's thresholds."""

    api_key = models.OneToOneField("gateway.ApiKey", on_delete=models.CASCADE, related_name="budget")
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=2)

    def __str__(self):
        return f"budget of key {self.api_key_id}: {self.monthly_budget_usd} USD"


ALERT_KINDS = [
    ("plan_limit", _("Plan limit")),
    ("budget", _("Budget")),
    ("key_budget", _("Key budget")),
    ("usage_spike", _("Usage spike")),
    ("error_spike", _("Error spike")),
]
EMAIL_STATES = [("pending", _("pending")), ("sent", _("sent")), ("skipped", _("not emailed"))]


class Alert(models.Model):
    """One alert: an entry of the in-cabinet list, and the ledger that makes each fire once.

    ``period`` names what the alert is about, so the same alert cannot be raised twice:
    ``2026-11:80`` (a month and a threshold), ``2026-11:key7:100``, or the first hour of an
    anomaly episode ``2026-11-27T14``. ``last_hour`` is the latest hour of an episode.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=16, choices=ALERT_KINDS)
    period = models.CharField(max_length=40)
    api_key = models.ForeignKey("gateway.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    details = models.JSONField(default=dict)
    created = models.DateTimeField(default=timezone.now)
    last_hour = models.DateTimeField(null=True, blank=True)
    email = models.CharField(max_length=8, choices=EMAIL_STATES, default="pending")
    sent_to = models.JSONField(default=list)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["user", "kind", "period"], name="metrics_alert_once_per_period")]
        indexes = [models.Index(fields=["user", "-created"])]

    def __str__(self):
        return f"{self.kind} {self.period} for {self.user_id}"

    @property
    def first_hour(self):
        """The first hour of an anomaly episode."""
        return parse_datetime(self.details["hour"]) if "hour" in self.details else None
