from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

STATUS_LABELS = {
    "active": _("active"),
    "trialing": _("trial"),
    "past_due": _("payment overdue"),
    "paused": _("paused"),
    "canceled": _("canceled"),
    "completed": _("paid"),
    "billed": _("billed"),
    "ready": _("ready"),
    "draft": _("draft"),
}


class Subscription(models.Model):
    """The account's Paddle subscription, as the latest applied webhook event describes it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscription")
    paddle_subscription_id = models.CharField(max_length=64, unique=True)
    paddle_customer_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16)  # active, trialing, past_due, paused, canceled
    price_id = models.CharField(max_length=64, blank=True)
    plan = models.CharField(max_length=16, default="free")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    next_billed_at = models.DateTimeField(null=True, blank=True)
    scheduled_change = models.JSONField(null=True, blank=True)
    past_due_since = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    # occurred_at of the newest event applied: an older event never overwrites newer state.
    state_at = models.DateTimeField()
    updated = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.paddle_subscription_id} ({self.status})"

    @property
    def status_label(self):
        return STATUS_LABELS.get(self.status, self.status)


class WebhookEvent(models.Model):
    """Every verified Paddle notification, stored before it is processed (unique on Paddle's event id)."""

    RECEIVED, PROCESSED, IGNORED, FAILED = "received", "processed", "ignored", "failed"

    event_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(null=True)
    status = models.CharField(max_length=12, default=RECEIVED)
    error = models.CharField(max_length=300, blank=True)
    received = models.DateTimeField(default=timezone.now)
    processed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received"]

    def __str__(self):
        return f"{self.event_type} {self.event_id} ({self.status})"


class Transaction(models.Model):
    """A Paddle transaction (a charge), with refunds and chargebacks from adjustments."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="transactions")
    paddle_transaction_id = models.CharField(max_length=64, unique=True)
    paddle_subscription_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16)
    origin = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    invoice_number = models.CharField(max_length=64, blank=True)
    billed_at = models.DateTimeField(null=True, blank=True)
    adjustment = models.CharField(max_length=16, blank=True)  # refund, chargeback, credit
    adjustment_status = models.CharField(max_length=16, blank=True)
    state_at = models.DateTimeField()

    class Meta:
        ordering = ["-billed_at"]

    def __str__(self):
        return f"{self.paddle_transaction_id} {self.total} {self.currency}"

    @property
    def status_label(self):
        return STATUS_LABELS.get(self.status, self.status)
