from celery import shared_task

from accounts.models import User
from aura.emails import send_email

from . import services
from .models import Subscription, WebhookEvent


@shared_task(name="billing.process_webhook_event_task", acks_late=True)
def process_webhook_event_task(event_pk: int) -> None:
    event = WebhookEvent.objects.filter(pk=event_pk).first()
    if event is not None:
        services.event_process(event=event)


@shared_task(
    name="billing.send_billing_email_task",
    autoretry_for=(OSError,),
    retry_backoff=30,
    retry_backoff_max=1800,
    max_retries=6,
    acks_late=True,
)
def send_billing_email_task(user_id: int, kind: str, event_pk: int) -> None:
    """One billing email per (kind, event): idempotent through the event it answers."""
    from django.conf import settings
    from django.core.cache import cache

    sent_marker = f"billing:mailed:{kind}:{event_pk}"
    if cache.get(sent_marker):
        return  # a redelivered task: this email went out already
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return
    subscription = Subscription.objects.filter(user=user).first()
    send_email(
        f"billing-{kind}",
        to=user.email,
        context={"user": user, "subscription": subscription, "billing_url": settings.SITE_URL + "/billing/"},
        language=user.language,
    )
    cache.set(sent_marker, 1, 7 * 24 * 3600)
