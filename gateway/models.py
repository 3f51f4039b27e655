import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .providers import PROVIDER_CHOICES

COMPRESSION_LEVELS = [
    ("off", _("Off: send prompts byte for byte")),
    ("lossless", _("Lossless: tighten whitespace and JSON, never change meaning")),
    ("aggressive", _("Aggressive (lossy): also trim long logs, sample big JSON arrays, honour token budgets")),
]
ROUTING_POLICIES = [
    ("cost", _("Cost: the cheapest model that can do the job")),
    ("balanced", _("Balanced: cheap, but also fast and reliable")),
    ("quality", _("Quality: the strongest model that fits")),
]


class ApiKey(models.Model):
    """An AURA key. Only its SHA-256 digest is kept; the secret is shown once.

    Each key carries how AURA treats the calls made with it: compression, the
    response cache, and routing for ``model: "auto"`` and fallbacks.
    """

    # The per-key settings, in the order the cabinet shows them.
    SETTINGS = (
        "compression",
        "cache_enabled",
        "cache_ttl",
        "routing_policy",
        "reference_model",
        "allowed_models",
        "fallback_models",
        "rpm_limit",
        "tpm_limit",
    )

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=80)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)
    compression = models.CharField(_("compression"), max_length=12, choices=COMPRESSION_LEVELS, default="lossless")
    cache_enabled = models.BooleanField(_("response cache"), default=False)
    cache_ttl = models.PositiveIntegerField(_("cache lifetime (seconds)"), default=3600)
    routing_policy = models.CharField(_("routing policy"), max_length=12, choices=ROUTING_POLICIES, default="cost")
    allowed_models = models.JSONField(_("allowed models"), default=list, blank=True)
    fallback_models = models.JSONField(_("fallback models"), default=list, blank=True)
    reference_model = models.CharField(_("reference model"), max_length=120, default="gpt-4o")
    # Lower limits than the plan's, for this key alone (empty: the plan's limits apply).
    rpm_limit = models.PositiveIntegerField(_("requests per minute"), null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(_("tokens per minute"), null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self):
        return self.revoked is None


class DataKey(models.Model):
    """A user's data key, wrapped by the master keyring. Deleting it shreds every provider key."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_key")
    master_version = models.PositiveIntegerField()
    wrapped = models.BinaryField()
    created = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"data key of user {self.user_id} (master v{self.master_version})"


class ProviderKey(models.Model):
    """A provider API key (BYOK), AES-256-GCM encrypted under the user's data key."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(_("provider"), max_length=16, choices=PROVIDER_CHOICES)
    label = models.CharField(_("label"), max_length=40, blank=True)
    base_url = models.URLField(_("base URL"), max_length=300, blank=True)
    ciphertext = models.BinaryField()
    last4 = models.CharField(max_length=4)
    check_status = models.CharField(max_length=12, default="unchecked")
    checked = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "label"]
        constraints = [models.UniqueConstraint(fields=["user", "provider", "label"], name="gateway_providerkey_unique_label")]

    def __str__(self):
        return f"{self.provider} key …{self.last4}"

    @property
    def masked(self):
        return f"••••{self.last4}"
