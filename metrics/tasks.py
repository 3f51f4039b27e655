import smtplib

from celery import shared_task
from django.contrib.auth import get_user_model
from django.utils import timezone

from aura.celery import next_batch

from . import services, spool
from .models import Alert


@shared_task(name="metrics.rollup_recent_task", acks_late=True, soft_time_limit=240, time_limit=300)
def rollup_recent_task() -> None:
    """Re-roll the last hours (and their days); re-queues itself while catching up after an outage."""
    if services.rollups_refresh(now=timezone.now()):
        next_batch(rollup_recent_task)


@shared_task(name="metrics.drain_usage_spool_task", acks_late=True, soft_time_limit=50, time_limit=60)
def drain_usage_spool_task() -> None:
    """Usage records left in the Redis spool, e.g. while no web process runs to drain it."""
    spool.drain_all(seconds=40)  # bounded: under load the queue is never empty, and the web flushers drain it


@shared_task(name="metrics.check_alerts_task", acks_late=True, soft_time_limit=240, time_limit=300)
def check_alerts_task(after_user_id: int = 0) -> None:
    """Check one batch of recently active accounts; re-queues itself for the next batch."""
    last, more = services.alerts_check_active(now=timezone.now(), after_user_id=after_user_id)
    if more:
        next_batch(check_alerts_task, last)


@shared_task(name="metrics.check_user_alerts_task", acks_late=True, soft_time_limit=60, time_limit=90)
def check_user_alerts_task(user_id: int) -> None:
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is not None:
        services.alerts_check(user=user, now=timezone.now())


@shared_task(
    name="metrics.send_alert_task",
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=1800,
    max_retries=8,
    acks_late=True,
    soft_time_limit=120,
    time_limit=150,
)
def send_alert_task(alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id).select_related("user").first()
    if alert is not None:
        services.alert_send(alert=alert)
