from django.conf import settings
from django.db import models
from django.utils import timezone


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
