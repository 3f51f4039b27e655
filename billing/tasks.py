from celery import shared_task

from accounts.models import User
from aura.emails import send_email

from . import services
from .models import Subscription, WebhookEvent
from .plans import PLANS


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
        context={
            "user": user,
            "subscription": subscription,
            "plan": PLANS.get(subscription.plan) if subscription else None,  # its name, in the user's language
            "billing_url": settings.SITE_URL + "/billing/",
        },
        language=user.language,
    )
    cache.set(sent_marker, 1, 7 * 24 * 3600)


@shared_task(name="billing.cancel_subscription_task", autoretry_for=(Exception,), retry_backoff=60, max_retries=8, acks_late=True)
def cancel_subscription_task(user_id: int) -> None:
    """An account deletion cancels its Paddle subscription (at once, not at period end)."""
    from . import paddle

    subscription = Subscription.objects.filter(user_id=user_id).exclude(status="canceled").first()
    if subscription is None:
        return
    try:
        paddle._call("POST", f"/subscriptions/{subscription.paddle_subscription_id}/cancel", {"effective_from": "immediately"})
    except paddle.NotConfigured:
        return  # no Paddle on this AURA: nothing to cancel there
