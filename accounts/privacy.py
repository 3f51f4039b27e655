"""The GDPR rights as workflows: restriction and objection, erasure with 30 days to recover, export."""

import logging
import zipfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from aura.emails import send_email

from . import security
from .models import DataExport, User

log = logging.getLogger(__name__)

RECOVERY_DAYS = 30
EXPORT_DAYS = 7
CANCEL_SALT = "accounts.cancel-deletion"


# restriction and objection -------------------------------------------------------


def privacy_choices_set(*, user: User, restrict: bool, object_to_analytics: bool) -> None:
    """Record each choice with the time it was made; unchanged choices keep their time."""
    now = timezone.now()
    user.restricted_at = (user.restricted_at or now) if restrict else None
    user.objected_at = (user.objected_at or now) if object_to_analytics else None
    user.save(update_fields=["restricted_at", "objected_at", "updated"])
    from gateway.services import api_keys_forget

    api_keys_forget(user=user)  # every node learns the new choice on its next call


# erasure ---------------------------------------------------------------------------


def deletion_request(*, user: User) -> None:
    """Start the 30-day erasure: provider keys are crypto-shredded and deleted, AURA keys revoked, and
    every browser signed out, at once (signing in again is how the owner takes the account back)."""
    from gateway.services import api_key_revoke, data_key_shred

    with transaction.atomic():
        user.deletion_requested_at = timezone.now()
        user.save(update_fields=["deletion_requested_at", "updated"])
        data_key_shred(user=user)
        for key in user.api_keys.filter(revoked__isnull=True):
            api_key_revoke(key=key)
        security.sessions_end_others(user=user, keep=None)
    token = signing.dumps({"u": user.pk, "at": user.deletion_requested_at.isoformat()}, salt=CANCEL_SALT)
    send_email(
        "deletion-requested",
        to=user.email,
        context={
            "user": user,
            "erase_on": user.deletion_requested_at + timedelta(days=RECOVERY_DAYS),
            "cancel_link": settings.SITE_URL + reverse("cancel_deletion", args=[token]),
        },
        language=user.language,
    )
    from billing.tasks import cancel_subscription_task

    # Last, and robust: the deletion is done and its email (with the link that cancels it) sent,
    # whatever happens to the cancellation at Paddle. With a broker it is queued and retried there;
    # run in process (the embedded defaults), a Paddle that cannot be reached is logged, not a 500.
    transaction.on_commit(lambda: cancel_subscription_task.delay(user.pk), robust=True)


def deletion_cancel(*, user: User) -> bool:
    if user.deletion_requested_at is None:
        return False
    user.deletion_requested_at = None
    user.save(update_fields=["deletion_requested_at", "updated"])
    return True


def deletion_cancel_by_token(*, token: str) -> User | None:
    try:
        data = signing.loads(token, salt=CANCEL_SALT, max_age=RECOVERY_DAYS * 86400)
    except signing.BadSignature:
        return None
    user = User.objects.filter(pk=data.get("u")).first()
    if user is None or user.deletion_requested_at is None or user.deletion_requested_at.isoformat() != data.get("at"):
        return None
    deletion_cancel(user=user)
    return user


# export ----------------------------------------------------------------------------


def exports_dir() -> Path:
    path = Path(settings.DATA_DIR) / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_path(export: DataExport) -> Path:
    return exports_dir() / f"{export.pk}.zip"


class ExportRefused(Exception):
    """Why a new export cannot start now (safe to show)."""


def export_request(*, user: User) -> DataExport:
    """One export at a time, and at most one an hour."""
    if user.exports.filter(status=DataExport.PENDING).exists():
        raise ExportRefused(_("An export is already being prepared."))
    recent = user.exports.filter(created__gte=timezone.now() - timedelta(hours=1)).exists()
    if recent:
        raise ExportRefused(_("You can request one export an hour. Your last one is listed below."))
    export = DataExport.objects.create(user=user)
    from .tasks import build_export_task

    transaction.on_commit(lambda: build_export_task.delay(str(export.pk)))
    return export


def export_build(*, export: DataExport) -> None:
    """Write the ZIP. Each app contributes its files through ``<app>.exports.collect(user)``."""
    from .exports import collect_all

    if export.status != DataExport.PENDING:
        return
    user = export.user
    path = export_path(export)
    try:
        files = collect_all(user)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        path.chmod(0o600)
    except Exception as error:
        log.error("export %s failed: %s", export.pk, type(error).__name__)
        path.unlink(missing_ok=True)
        export.status = DataExport.FAILED
        export.finished = timezone.now()
        export.save(update_fields=["status", "finished"])
        raise
    export.status, export.finished, export.size = DataExport.READY, timezone.now(), path.stat().st_size
    export.save(update_fields=["status", "finished", "size"])
    send_email(
        "export-ready",
        to=user.email,
        context={"user": user, "link": settings.SITE_URL + reverse("privacy_settings"), "days": EXPORT_DAYS},
        language=user.language,
    )
