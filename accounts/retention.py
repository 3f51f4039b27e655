"""Retention: the privacy policy's time limits, enforced by jobs that Celery beat runs.

Each job is idempotent, works in batches (a batch that fills up asks to run
again), and is safe to run twice at once: rows are claimed with
``SELECT … FOR UPDATE SKIP LOCKED`` so concurrent runs remove each row once.
Every run leaves an audit record of what it removed, by count (and, for
erasures, the account ids — no other personal data).
"""

import logging
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.utils import timezone

from .models import DataExport, LoginEvent, RetentionRun, User, UserSession

log = logging.getLogger(__name__)

BATCH = 5000
LOG_DAYS = 14
RECOVERY_DAYS = 30
EXPORT_DAYS = 7
AGGREGATE_MONTHS = 12


def _claim(queryset, limit: int | None = None) -> list:
    """Lock up to ``limit`` rows (a batch) no other run holds, and return their ids."""
    locked = queryset.order_by("pk")
    if connection.features.has_select_for_update_skip_locked:
        locked = locked.select_for_update(skip_locked=True)
    return list(locked.values_list("pk", flat=True)[: limit or BATCH])


def _delete_batch(queryset) -> int:
    with transaction.atomic():
        ids = _claim(queryset)
        if not ids:
            return 0
        queryset.model.objects.filter(pk__in=ids).delete()
    return len(ids)


def purge_logs(now=None) -> tuple[dict, bool]:
    """Request logs (raw usage records, login history), Paddle payloads and log files: 14 days."""
    from billing.models import WebhookEvent
    from metrics import spool
    from metrics.models import UsageRecord

    cutoff = (now or timezone.now()) - timedelta(days=LOG_DAYS)
    removed = {
        "usage_records": _delete_batch(UsageRecord.objects.filter(created__lt=cutoff)),
        "login_events": _delete_batch(LoginEvent.objects.filter(created__lt=cutoff)),
        # Sessions past their expiry (at most SESSION_COOKIE_AGE_DAYS, 14 by default), and the
        # listed browsers (IP, device) whose session is gone: ended, logged out or expired.
        "sessions": _delete_batch(Session.objects.filter(expire_date__lt=now or timezone.now())),
        "browser_sessions": _delete_batch(UserSession.objects.exclude(session_key__in=Session.objects.values("session_key"))),
    }
    with transaction.atomic():
        ids = _claim(WebhookEvent.objects.filter(received__lt=cutoff, payload__isnull=False))
        removed["webhook_payloads"] = WebhookEvent.objects.filter(pk__in=ids).update(payload=None)
    removed["log_files"] = _purge_log_files(cutoff)
    removed["refused_usage_records"] = spool.purge_refused(older_than=cutoff)  # kept in Redis for an operator, 14 days
    return removed, any(count == BATCH for count in removed.values())


def _purge_log_files(cutoff) -> int:
    directory = settings.LOG_DIR
    if not directory:
        return 0
    removed = 0
    for path in Path(directory).glob("*.log*"):
        if path.is_file() and path.stat().st_mtime < cutoff.timestamp():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def erase_accounts(now=None) -> tuple[dict, bool, list]:
    """Accounts whose deletion request is 30 days old are erased with everything linked to them."""
    from metrics import spool

    cutoff = (now or timezone.now()) - timedelta(days=RECOVERY_DAYS)
    with transaction.atomic():
        ids = _claim(User.objects.filter(deletion_requested_at__lt=cutoff), limit=100)
        for user in User.objects.filter(pk__in=ids):
            for export in user.exports.all():
                _export_file(export).unlink(missing_ok=True)
        User.objects.filter(pk__in=ids).delete()
    # Their records PostgreSQL refused (kept in Redis for an operator) go too.
    removed = {"accounts": len(ids), "refused_usage_records": spool.purge_refused(user_ids=ids) if ids else 0}
    return removed, len(ids) == 100, ids


def shred_keys(now=None) -> tuple[dict, bool, list]:
    """Provider keys of accounts awaiting deletion: the data key went at once, the rows go here (within 24 h)."""
    from gateway.models import DataKey, ProviderKey

    pending = User.objects.filter(deletion_requested_at__isnull=False)
    removed_keys = _delete_batch(ProviderKey.objects.filter(user__in=pending))
    with transaction.atomic():
        ids = _claim(DataKey.objects.filter(user__in=pending))
        owners = list(DataKey.objects.filter(pk__in=ids).values_list("user_id", flat=True))
        DataKey.objects.filter(pk__in=ids).delete()
    return {"provider_keys": removed_keys, "data_keys": len(ids)}, removed_keys == BATCH, owners


def anonymise_usage(now=None) -> tuple[dict, bool]:
    """Fold usage into aggregates with no user link; drop aggregates older than 12 months."""
    from metrics.anonymous import fold_days, purge_aggregates

    now = now or timezone.now()
    folded = fold_days(now=now, days=LOG_DAYS)
    purged = purge_aggregates(older_than=now - timedelta(days=AGGREGATE_MONTHS * 31))
    return {"aggregate_rows_written": folded, "aggregate_rows_purged": purged}, False


def _export_file(export: DataExport) -> Path:
    return Path(settings.DATA_DIR) / "exports" / f"{export.pk}.zip"


def expire_exports(now=None) -> tuple[dict, bool]:
    cutoff = (now or timezone.now()) - timedelta(days=EXPORT_DAYS)
    with transaction.atomic():
        ids = _claim(DataExport.objects.filter(created__lt=cutoff), limit=500)
        for export in DataExport.objects.filter(pk__in=ids):
            _export_file(export).unlink(missing_ok=True)
        DataExport.objects.filter(pk__in=ids).delete()
    return {"exports": len(ids)}, len(ids) == 500


JOBS = {
    "purge-logs": purge_logs,
    "erase-accounts": erase_accounts,
    "shred-keys": shred_keys,
    "anonymise-usage": anonymise_usage,
    "expire-exports": expire_exports,
}


def run(name: str, *, now=None) -> tuple[RetentionRun, bool]:
    """Run one batch of a job and audit it; returns (audit, more to do)."""
    started = time.monotonic()
    audit = RetentionRun.objects.create(job=name)
    result = JOBS[name](now=now)
    removed, more = result[0], result[1]
    audit.account_ids = result[2] if len(result) > 2 else []
    audit.removed, audit.finished = removed, timezone.now()
    audit.save(update_fields=["removed", "finished", "account_ids"])
    log.info("retention %s removed %s in %.1fs", name, removed, time.monotonic() - started)
    return audit, more
