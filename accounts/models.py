import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

THEMES = [("system", _("System")), ("light", _("Light")), ("dark", _("Dark"))]


class UserManager(BaseUserManager):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email):
        return (email or "").strip().lower()

    def get_by_natural_key(self, email):
        return self.get(email=self.normalize_email(email))

    def create_user(self, email, password=None, **fields):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True, email_verified=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """An AURA account holder. The email address is the login, compared case-insensitively."""

    email = models.EmailField(_("email address"), max_length=254, unique=True)
    display_name = models.CharField(_("display name"), max_length=80)
    email_verified = models.BooleanField(default=False)
    language = models.CharField(max_length=8, choices=settings.LANGUAGES, default="en")
    theme = models.CharField(max_length=8, choices=THEMES, default="system")
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)
    # GDPR choices, each recorded with the time it was set (None: not chosen).
    restricted_at = models.DateTimeField(null=True, blank=True, help_text="processing restricted to delivering the service")
    objected_at = models.DateTimeField(null=True, blank=True, help_text="objected to analytics on the account's usage")
    deletion_requested_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["display_name"]

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = UserManager.normalize_email(self.email)

    @property
    def excluded_from_analytics(self) -> bool:
        return self.restricted_at is not None or self.objected_at is not None

    def get_full_name(self):
        return self.display_name

    def get_short_name(self):
        return self.display_name


class LoginEvent(models.Model):
    """One login attempt: the privacy policy's "technical data". Kept 14 days."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="login_events")
    created = models.DateTimeField(default=timezone.now, db_index=True)
    succeeded = models.BooleanField()
    ip = models.GenericIPAddressField(null=True, blank=True)
    browser = models.CharField(max_length=64, blank=True)
    os = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["user", "-created"])]

    def __str__(self):
        return f"{'login' if self.succeeded else 'failed login'} {self.created:%Y-%m-%d %H:%M}"


class DataExport(models.Model):
    """A GDPR export: a ZIP of the account's data, downloadable by its owner until it expires."""

    PENDING, READY, FAILED = "pending", "ready", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="exports")
    status = models.CharField(max_length=8, default=PENDING)
    created = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)
    size = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"export {self.pk} ({self.status})"


class RetentionRun(models.Model):
    """The audit of one retention job run: what it removed, by count. No personal data."""

    job = models.CharField(max_length=40)
    started = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)
    removed = models.JSONField(default=dict)
    account_ids = models.JSONField(default=list, help_text="accounts erased or shredded by this run")

    class Meta:
        ordering = ["-started"]

    def __str__(self):
        return f"{self.job} at {self.started:%Y-%m-%d %H:%M}"


class TwoFactor(models.Model):
    """TOTP two-factor authentication. The seed is AES-256-GCM encrypted under the vault's master key."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="two_factor")
    master_version = models.PositiveIntegerField()
    sealed_secret = models.BinaryField()
    enabled = models.DateTimeField(default=timezone.now)
    last_step = models.BigIntegerField(default=0, help_text="the last time step accepted: a code works once")

    def __str__(self):
        return f"2FA of user {self.user_id}"


class RecoveryCode(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=64)
    used = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"recovery code of user {self.user_id}"


class UserSession(models.Model):
    """A logged-in browser, so the owner can see and end it."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="browser_sessions")
    session_key = models.CharField(max_length=40, unique=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    device = models.CharField(max_length=120, blank=True)
    created = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self):
        return f"session of user {self.user_id} ({self.device})"
