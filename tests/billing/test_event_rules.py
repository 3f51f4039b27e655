"""Rules for applying Paddle's events that a retry or a late delivery puts to the test, applied in
process (tests/billing/test_events.py sends events through the webhook and a worker)."""

import json

from billing import services
from billing.models import Subscription, WebhookEvent
from billing.selectors import current_plan
from billing.tasks import process_webhook_event_task

from .conftest import PRICE_PRO, PRICE_TEAM, checkout_data, event, subscription_data

OLD, NEW = "sub_01old00000000000000000000", "sub_01new00000000000000000000"


def apply(payload) -> WebhookEvent:
    stored, _ = services.event_receive(payload=payload, body_digest=json.dumps(payload, sort_keys=True))
    services.event_process(event=stored)
    stored.refresh_from_db()
    return stored


def test_a_late_event_about_a_replaced_subscription_leaves_the_current_one(alice):
    apply(
        event(
            "subscription.canceled",
            subscription_data(alice, sub_id=OLD, status="canceled", price=PRICE_TEAM),
            occurred_at="2026-11-20T12:20:00Z",
        )
    )
    apply(event("subscription.created", subscription_data(alice, sub_id=NEW, price=PRICE_PRO), occurred_at="2026-11-20T12:30:00Z"))
    late = apply(
        event(
            "subscription.updated",
            subscription_data(alice, sub_id=OLD, status="canceled", price=PRICE_TEAM),
            occurred_at="2026-11-20T12:20:05Z",
        )
    )
    assert late.status == WebhookEvent.PROCESSED  # acknowledged, and changes nothing
    assert list(Subscription.objects.filter(user=alice).values_list("paddle_subscription_id", "status")) == [(NEW, "active")]
    assert current_plan(alice.pk).code == "pro"
    # Even newer than the running one's state, the end of another subscription does not end it.
    apply(event("subscription.canceled", subscription_data(alice, sub_id=OLD, status="canceled"), occurred_at="2026-11-21T09:00:00Z"))
    assert Subscription.objects.get(user=alice).paddle_subscription_id == NEW and current_plan(alice.pk).code == "pro"
    # A new paying subscription does replace it (the account moved to another one).
    apply(event("subscription.created", subscription_data(alice, sub_id=OLD, price=PRICE_TEAM), occurred_at="2026-11-22T09:00:00Z"))
    assert Subscription.objects.get(user=alice).paddle_subscription_id == OLD and current_plan(alice.pk).code == "team"


def test_data_of_the_wrong_shape_fails_the_event_with_its_reason(alice):
    data = subscription_data(alice)
    data["items"] = ["pri_not_an_object"]
    failed = apply(event("subscription.updated", data))
    assert failed.status == WebhookEvent.FAILED and failed.error == "malformed event data (AttributeError)"
    assert not Subscription.objects.exists()


def test_an_event_delivered_again_before_it_was_applied_is_queued_again(alice, deliver, django_capture_on_commit_callbacks):
    payload = event("subscription.created", subscription_data(alice, price=PRICE_TEAM))
    stored, _ = services.event_receive(payload=payload, body_digest="first")  # stored, then never applied (a crash, a lost task)
    with django_capture_on_commit_callbacks() as queued:
        assert deliver(payload).status_code == 200  # Paddle's redelivery
    assert len(queued) == 1  # its processing is queued again (before, only a new event was)
    process_webhook_event_task.apply(args=[stored.pk])
    assert WebhookEvent.objects.get().status == WebhookEvent.PROCESSED and current_plan(alice.pk).code == "team"
    with django_capture_on_commit_callbacks() as queued:
        assert deliver(payload).status_code == 200
    assert queued == []  # applied: a further delivery is a no-op


def test_a_paying_subscription_on_an_unknown_price_fails_loudly_and_an_ended_one_still_applies(alice, caplog):
    failed = apply(event("subscription.created", subscription_data(alice, price="pri_01unknown")))
    assert failed.status == WebhookEvent.FAILED and "unknown price id pri_01unknown" in failed.error
    assert "unknown price id" in caplog.text and current_plan(alice.pk).code == "free"
    apply(event("subscription.created", subscription_data(alice), occurred_at="2026-11-20T11:00:00Z"))
    ended = apply(
        event(
            "subscription.canceled", subscription_data(alice, status="canceled", price="pri_01unknown"), occurred_at="2026-11-20T12:00:00Z"
        )
    )
    assert ended.status == WebhookEvent.PROCESSED and current_plan(alice.pk).code == "free"


def test_a_scheduled_cancellation_is_announced_once(alice, django_capture_on_commit_callbacks):
    change = {"action": "cancel", "effective_at": "2026-12-20T10:00:00Z", "resumes_at": None}
    apply(event("subscription.created", subscription_data(alice)))
    emails = []
    for minute, extra in enumerate([{}, {"next_billed_at": None}, {"custom_data": {**checkout_data(alice.pk), "x": 1}}], 1):
        with django_capture_on_commit_callbacks() as callbacks:
            apply(
                event(
                    "subscription.updated",
                    subscription_data(alice, scheduled_change=change, **extra),
                    occurred_at=f"2026-11-20T10:0{minute}:00Z",
                )
            )
        emails += callbacks
    assert len(emails) == 1


def test_the_owners_second_checkout_as_another_customer_applies_and_the_operator_is_told(alice, caplog):
    """The account's own page signed the id: its owner bought the new one (another email at checkout,
    two tabs). It applies; the one it replaces is still billed by Paddle, which the log says."""
    apply(event("subscription.created", subscription_data(alice, sub_id=OLD, customer="ctm_01first")))
    second = apply(
        event(
            "subscription.created",
            subscription_data(alice, sub_id=NEW, customer="ctm_01second", price=PRICE_TEAM),
            occurred_at="2026-11-21T10:00:00Z",
        )
    )
    assert second.status == WebhookEvent.PROCESSED
    assert f"replaces the account's paying {OLD} (customer ctm_01first), which Paddle still bills" in caplog.text
    assert list(Subscription.objects.filter(user=alice).values_list("paddle_subscription_id", "paddle_customer_id")) == [
        (NEW, "ctm_01second")
    ]
    assert current_plan(alice.pk).code == "team"
