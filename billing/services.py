"""Billing workflows: applying Paddle's webhook events, and the cabinet's subscription actions.

Events are applied in ``occurred_at`` order per object: an event older than the
state already stored is recorded but changes nothing.
"""

import logging
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from accounts.models import User

from . import paddle, signatures
from .models import Subscription, Transaction, WebhookEvent
from .plans import FREE, PLANS, plan_for_price
from .selectors import forget_plan

log = logging.getLogger(__name__)


class EventError(ValueError):
    """A verified event that cannot be applied; the reason is stored on the event."""


# Subscription statuses under which the account has its plan (selectors.current_plan), and those
# under which it has none: an ended subscription never replaces a running one.
PAYING = ("active", "trialing", "past_due")


def _time(value) -> datetime | None:
    if not value:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise EventError(f"not a timestamp: {str(value)[:40]}")
    return parsed


def _require(data: dict, *names: str):
    missing = [n for n in names if not data.get(n)]
    if missing:
        raise EventError(f"missing field(s): {', '.join(missing)}")


def _signed_account(custom_data: dict) -> str | None:
    """The account id the checkout page signed, else None: an id without AURA's signature names no one,
    since the browser that opens the checkout writes customData."""
    account = custom_data.get("aura_account_id")
    if account is None or not signatures.account_verify(account, custom_data.get("aura_account_signature")):
        return None
    return str(account)


def _user_for(data: dict, customer_id: str | None) -> User:
    custom_data = data.get("custom_data") or {}
    account = _signed_account(custom_data)
    if account is not None:
        user = User.objects.filter(pk=account).first() if account.isdigit() else None
        if user is None:
            raise EventError(f"no AURA account {account[:20]}")
        return user
    subscription = Subscription.objects.filter(paddle_customer_id=customer_id).select_related("user").first() if customer_id else None
    if subscription is not None:
        return subscription.user
    if custom_data.get("aura_account_id") is not None:
        raise EventError("custom_data.aura_account_id has no valid signature from AURA's checkout page and the customer is unknown")
    raise EventError("the event names no AURA account (custom_data.aura_account_id) and its customer is unknown")


def event_receive(*, payload, body_digest: str) -> tuple[WebhookEvent, bool]:
    """Store a verified notification once; returns (event, created).

    A body that is not an event (bad JSON, no event id) is stored as failed, with
    its reason, under an id made from its digest, so a redelivery stays one row.
    """
    reason = None
    if not isinstance(payload, dict):
        reason, payload = "the body is not a JSON object", None
    elif not payload.get("event_id"):
        reason = "missing event_id"
    if reason:
        return WebhookEvent.objects.get_or_create(
            event_id=f"malformed-{body_digest[:40]}",
            defaults={
                "event_type": str((payload or {}).get("event_type") or "malformed")[:64],
                "payload": payload,
                "status": WebhookEvent.FAILED,
                "error": reason,
            },
        )
    try:
        occurred = _time(payload.get("occurred_at"))
    except EventError:
        occurred = None
    return WebhookEvent.objects.get_or_create(
        event_id=str(payload["event_id"])[:64],
        defaults={"event_type": str(payload.get("event_type") or "unknown")[:64], "occurred_at": occurred, "payload": payload},
    )


def event_process(*, event: WebhookEvent) -> None:
    """Apply one stored event. Safe to run twice, at once too: a processed event is skipped, and the
    event's row is locked while it is applied.

    A payload of the wrong shape (a string where Paddle sends an object) fails the event with its
    reason, as a missing field does. Anything else (the database or the broker down) leaves it
    received and raises, so that it is applied when Paddle delivers it again or the task runs again.
    """
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        if event.status != WebhookEvent.RECEIVED:
            return
        handler = HANDLERS.get(event.event_type.split(".")[0])
        try:
            if handler is None or event.event_type not in KNOWN:
                event.status = WebhookEvent.IGNORED
            else:
                if event.occurred_at is None:
                    raise EventError("missing or malformed occurred_at")
                data = (event.payload or {}).get("data")
                if not isinstance(data, dict):
                    raise EventError("missing data object")
                with transaction.atomic():
                    try:
                        handler(event, data)
                    except (AttributeError, TypeError, KeyError, IndexError) as error:
                        raise EventError(f"malformed event data ({type(error).__name__})") from None
                event.status = WebhookEvent.PROCESSED
        except EventError as error:
            event.status, event.error = WebhookEvent.FAILED, str(error)[:300]
            log.warning("Paddle event %s (%s) failed: %s", event.event_id, event.event_type, event.error)
        event.processed = timezone.now()
        event.save(update_fields=["status", "error", "processed"])


def _subscription_event(event: WebhookEvent, data: dict) -> None:
    _require(data, "id", "status")
    user = _user_for(data, data.get("customer_id"))
    subscription = Subscription.objects.select_for_update().filter(paddle_subscription_id=data["id"]).first()
    if subscription and subscription.state_at >= event.occurred_at:
        return  # an older (or the same) state arrived late: newer state stands
    other = Subscription.objects.select_for_update().filter(user=user).exclude(paddle_subscription_id=data["id"]).first()
    if other is not None and (other.state_at >= event.occurred_at or (data["status"] not in PAYING and other.status in PAYING)):
        # About a subscription the account has since replaced (a late delivery, a retry), or the end
        # of one while another runs: the account's own subscription stands.
        log.info("Paddle event %s is about subscription %s, not the account's current one: kept as it is", event.event_id, data["id"])
        return
    if other is not None and other.status in PAYING and other.paddle_customer_id != data.get("customer_id"):
        # The owner checked out again as another Paddle customer (another email, two tabs): the account
        # names it by its page's signature (_user_for), so the new one applies. The one it replaces
        # is still charged by Paddle until someone cancels it: said where the operator looks.
        log.warning(
            "Paddle subscription %s (customer %s) replaces the account's paying %s (customer %s), which Paddle still bills",
            data["id"][:40],
            str(data.get("customer_id"))[:40],
            other.paddle_subscription_id,
            other.paddle_customer_id,
        )
    previous_plan = subscription.plan if subscription else FREE.code
    previous_status = subscription.status if subscription else None
    previous_change = (subscription.scheduled_change if subscription else None) or {}
    items = data.get("items") or []
    price_id = ((items[0].get("price") or {}).get("id") or items[0].get("price_id") or "") if items else ""
    plan = plan_for_price(price_id)
    if plan is None and data["status"] in PAYING:
        # A paying subscription on a price this AURA does not know (PADDLE_PRICE_PRO / _TEAM unset or
        # changed): failing it, with its reason, beats keeping a paying customer on the wrong plan.
        raise EventError(f"unknown price id {str(price_id)[:40] or '(none)'}: set PADDLE_PRICE_PRO / PADDLE_PRICE_TEAM")
    period = data.get("current_billing_period") or {}
    subscription = subscription or Subscription(paddle_subscription_id=data["id"], user=user)
    Subscription.objects.filter(user=user).exclude(paddle_subscription_id=data["id"]).delete()  # one subscription per account
    subscription.user = user
    subscription.paddle_customer_id = data.get("customer_id") or subscription.paddle_customer_id
    subscription.status = data["status"]
    subscription.price_id = price_id
    subscription.plan = plan.code if plan else (subscription.plan if subscription.pk else FREE.code)
    subscription.current_period_start = _time(period.get("starts_at"))
    subscription.current_period_end = _time(period.get("ends_at"))
    subscription.next_billed_at = _time(data.get("next_billed_at"))
    subscription.scheduled_change = data.get("scheduled_change")
    subscription.canceled_at = _time(data.get("canceled_at"))
    if data["status"] == "past_due":
        subscription.past_due_since = subscription.past_due_since or event.occurred_at
    else:
        subscription.past_due_since = None
    subscription.state_at = event.occurred_at
    subscription.save()
    forget_plan(user.pk)
    _notify_subscription_change(subscription, previous_plan, previous_status, previous_change, event)


def _notify_subscription_change(
    subscription: Subscription, previous_plan: str, previous_status: str | None, previous_change: dict, event: WebhookEvent
) -> None:
    from .tasks import send_billing_email_task

    def later(kind):
        transaction.on_commit(lambda: send_billing_email_task.delay(subscription.user_id, kind, event.pk))

    change = subscription.scheduled_change or {}
    if subscription.status == "canceled" and previous_status != "canceled":
        later("subscription-canceled")
    elif change.get("action") == "cancel" and event.event_type == "subscription.updated" and previous_change != change:
        later("subscription-ending")  # once per scheduled cancellation, not on every update while it stands
    elif previous_status is not None and subscription.plan != previous_plan:
        later("plan-changed")


def _transaction_event(event: WebhookEvent, data: dict) -> None:
    _require(data, "id", "status")
    user = _user_for(data, data.get("customer_id"))
    row = Transaction.objects.select_for_update().filter(paddle_transaction_id=data["id"]).first()
    if row and row.state_at >= event.occurred_at:
        return
    totals = (data.get("details") or {}).get("totals") or {}
    try:
        # Paddle amounts are strings in the lowest denomination (cents).
        total = Decimal(str(totals.get("grand_total") or totals.get("total") or 0)) / 100
    except InvalidOperation:
        raise EventError("malformed totals") from None
    row = row or Transaction(paddle_transaction_id=data["id"], user=user)
    row.user = user
    row.paddle_subscription_id = data.get("subscription_id") or ""
    row.status = data["status"]
    row.origin = data.get("origin") or ""
    row.currency = (data.get("currency_code") or "")[:3]
    row.total = total
    row.invoice_number = data.get("invoice_number") or ""
    row.billed_at = _time(data.get("billed_at")) or event.occurred_at
    row.state_at = event.occurred_at
    row.save()
    from .tasks import send_billing_email_task

    if event.event_type == "transaction.payment_failed":
        transaction.on_commit(lambda: send_billing_email_task.delay(user.pk, "payment-failed", event.pk))
    elif event.event_type == "transaction.completed" and row.origin == "subscription_recurring":
        transaction.on_commit(lambda: send_billing_email_task.delay(user.pk, "renewal-receipt", event.pk))


def _adjustment_event(event: WebhookEvent, data: dict) -> None:
    _require(data, "transaction_id", "action", "status")
    row = Transaction.objects.select_for_update().filter(paddle_transaction_id=data["transaction_id"]).first()
    if row is None:
        raise EventError("adjustment for an unknown transaction")
    row.adjustment = str(data["action"])[:16]
    row.adjustment_status = str(data["status"])[:16]
    row.save(update_fields=["adjustment", "adjustment_status"])


def _customer_event(event: WebhookEvent, data: dict) -> None:
    # AURA keeps no customer details beyond Paddle's id; a changed email at Paddle changes nothing here.
    _require(data, "id")


HANDLERS = {
    "subscription": _subscription_event,
    "transaction": _transaction_event,
    "adjustment": _adjustment_event,
    "customer": _customer_event,
}
KNOWN = {
    *(f"subscription.{s}" for s in ("created", "activated", "trialing", "updated", "past_due", "paused", "resumed", "canceled")),
    "transaction.completed",
    "transaction.payment_failed",
    "customer.updated",
    "adjustment.created",
    "adjustment.updated",
}


# cabinet actions -----------------------------------------------------------------------


def subscription_cancel(*, subscription: Subscription) -> None:
    """Cancel at the end of the period. The webhook that follows updates our state."""
    paddle.cancel_subscription(subscription.paddle_subscription_id)


def subscription_keep(*, subscription: Subscription) -> None:
    paddle.remove_scheduled_change(subscription.paddle_subscription_id)


def subscription_change_plan(*, subscription: Subscription, plan_code: str) -> None:
    plan = PLANS.get(plan_code)
    if plan is None or not plan.paddle_price_id:
        raise paddle.PaddleError(_("That plan cannot be bought here."))
    paddle.change_plan(subscription.paddle_subscription_id, plan.paddle_price_id)
