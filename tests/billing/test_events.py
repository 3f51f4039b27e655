"""Signed events through the webhook endpoint, processed by Celery (a real worker when Redis is configured)."""

import json
import re
import time

import pytest

from billing.models import Subscription, Transaction, WebhookEvent
from billing.selectors import current_plan

from .conftest import PRICE_TEAM, checkout_data, event, subscription_data

pytestmark = pytest.mark.usefixtures("transactional_db", "celery_worker")


def settled(event_id, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = WebhookEvent.objects.filter(event_id=event_id).first()
        if row and row.status != WebhookEvent.RECEIVED:
            return row
        time.sleep(0.05)
    raise AssertionError(f"event {event_id} was not processed")


def send(deliver, payload):
    assert deliver(payload).status_code == 200
    return settled(payload["event_id"])


@pytest.mark.parametrize("kind", ["created", "activated", "trialing", "updated", "resumed"])
def test_a_live_subscription_grants_its_plan(deliver, alice, kind):
    status = "trialing" if kind == "trialing" else "active"
    row = send(deliver, event(f"subscription.{kind}", subscription_data(alice, status=status, price=PRICE_TEAM)))
    assert row.status == WebhookEvent.PROCESSED
    subscription = Subscription.objects.get(user=alice)
    assert subscription.status == status and subscription.plan == "team"
    assert subscription.paddle_customer_id == "ctm_01hv6y1jedq4p1n0yqn5ba3ky4"
    assert subscription.current_period_end.isoformat().startswith("2026-12-20")
    assert current_plan(alice.pk).code == "team"


@pytest.mark.parametrize("kind, status", [("paused", "paused"), ("canceled", "canceled")])
def test_a_paused_or_canceled_subscription_falls_to_free(deliver, alice, kind, status):
    send(deliver, event("subscription.created", subscription_data(alice)))
    send(deliver, event(f"subscription.{kind}", subscription_data(alice, status=status), occurred_at="2026-11-21T10:00:00Z"))
    assert Subscription.objects.get(user=alice).status == status
    assert current_plan(alice.pk).code == "free"


def test_past_due_keeps_the_plan_for_the_grace_period(deliver, alice, settings):
    send(deliver, event("subscription.created", subscription_data(alice)))
    send(deliver, event("subscription.past_due", subscription_data(alice, status="past_due"), occurred_at="2026-11-21T10:00:00Z"))
    subscription = Subscription.objects.get(user=alice)
    assert subscription.past_due_since is not None
    from billing.selectors import plan_from

    assert plan_from(subscription, now=subscription.past_due_since).code == "pro"
    from datetime import timedelta

    later = subscription.past_due_since + timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS + 1)
    assert plan_from(subscription, now=later).code == "free"


def test_a_scheduled_change_is_kept(deliver, alice):
    change = {"action": "cancel", "effective_at": "2026-12-20T10:00:00Z", "resumes_at": None}
    send(deliver, event("subscription.updated", subscription_data(alice, scheduled_change=change)))
    assert Subscription.objects.get(user=alice).scheduled_change == change


def test_duplicates_are_no_ops(deliver, alice):
    payload = event("subscription.created", subscription_data(alice))
    send(deliver, payload)
    assert deliver(payload).status_code == 200
    assert WebhookEvent.objects.count() == 1 and Subscription.objects.count() == 1


def test_an_older_event_never_overwrites_newer_state(deliver, alice):
    send(deliver, event("subscription.canceled", subscription_data(alice, status="canceled"), occurred_at="2026-11-22T10:00:00Z"))
    late = send(deliver, event("subscription.activated", subscription_data(alice, price=PRICE_TEAM), occurred_at="2026-11-21T10:00:00Z"))
    assert late.status == WebhookEvent.PROCESSED
    subscription = Subscription.objects.get(user=alice)
    assert subscription.status == "canceled" and subscription.plan == "pro"


def test_unknown_event_types_are_stored_and_acknowledged(deliver, db):
    row = send(deliver, event("discount.created", {"id": "dsc_01"}))
    assert row.status == WebhookEvent.IGNORED


def test_a_missing_account_fails_alone_and_others_go_on(deliver, alice):
    broken = subscription_data(alice, sub_id="sub_broken")
    broken["custom_data"] = checkout_data(999999)
    failed = send(deliver, event("subscription.created", broken))
    assert failed.status == WebhookEvent.FAILED and "no AURA account" in failed.error
    ok = send(deliver, event("subscription.created", subscription_data(alice), occurred_at="2026-11-20T11:00:00Z"))
    assert ok.status == WebhookEvent.PROCESSED


def test_missing_fields_and_bad_json_are_stored_as_failed(deliver, db):
    missing = send(deliver, event("subscription.created", {"status": "active"}))
    assert missing.status == WebhookEvent.FAILED and "missing field(s): id" in missing.error
    assert deliver(None, raw=b"{not json").status_code == 200
    row = WebhookEvent.objects.get(event_type="malformed")
    assert row.status == WebhookEvent.FAILED and row.error == "the body is not a JSON object"


def test_transactions_and_refunds(deliver, alice):
    send(deliver, event("subscription.created", subscription_data(alice)))
    txn = {
        "id": "txn_01hv8m0mnx3sj85e7gxc6kga03",
        "status": "completed",
        "customer_id": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4",
        "subscription_id": "sub_01hv8x29kz0t586xy6zn1a62ny",
        "origin": "web",
        "currency_code": "USD",
        "invoice_number": "325-10566",
        "billed_at": "2026-11-20T10:00:05Z",
        "details": {"totals": {"total": "2900", "grand_total": "2900"}},
    }
    send(deliver, event("transaction.completed", txn, occurred_at="2026-11-20T10:00:06Z"))
    row = Transaction.objects.get()
    assert row.user == alice and str(row.total) == "29.00" and row.invoice_number == "325-10566"
    refund = {"id": "adj_01", "transaction_id": txn["id"], "action": "refund", "status": "approved"}
    send(deliver, event("adjustment.created", refund, occurred_at="2026-11-23T10:00:00Z"))
    row.refresh_from_db()
    assert row.adjustment == "refund" and row.adjustment_status == "approved"


def test_a_failed_payment_is_recorded(deliver, alice):
    send(deliver, event("subscription.created", subscription_data(alice)))
    txn = {
        "id": "txn_02",
        "status": "past_due",
        "customer_id": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4",
        "details": {"totals": {"grand_total": "2900"}},
    }
    row = send(deliver, event("transaction.payment_failed", txn, occurred_at="2026-11-25T10:00:00Z"))
    assert row.status == WebhookEvent.PROCESSED
    assert Transaction.objects.get().status == "past_due"


def test_customer_updated_is_processed(deliver, alice):
    send(deliver, event("subscription.created", subscription_data(alice)))
    row = send(
        deliver,
        event("customer.updated", {"id": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4", "email": "new@example.org"}, occurred_at="2026-11-24T10:00:00Z"),
    )
    assert row.status == WebhookEvent.PROCESSED
    assert "new@example.org" not in str(Subscription.objects.values().get())


def page_checkout_data(client) -> dict:
    """The customData billing.js builds from the pricing page's checkout config."""
    page = client.get("/pricing/").content.decode()
    config = json.loads(re.search(r'<script id="paddle-config" type="application/json">(.*?)</script>', page).group(1))
    return {"aura_account_id": str(config["account"]), "aura_account_signature": config["account_signature"]}


def test_a_checkout_from_the_pricing_page_grants_the_plan_to_its_account(deliver, alice_client, alice):
    custom_data = page_checkout_data(alice_client)
    assert custom_data == checkout_data(alice.pk)  # the page carries the id and its signature
    row = send(deliver, event("subscription.created", {**subscription_data(alice, price=PRICE_TEAM), "custom_data": custom_data}))
    assert row.status == WebhookEvent.PROCESSED
    assert "Team" in alice_client.get("/billing/").content.decode() and current_plan(alice.pk).code == "team"


def test_another_accounts_id_in_a_checkout_is_refused_and_the_victim_keeps_their_plan(deliver, client, alice, bob, paddle_api):
    send(deliver, event("subscription.created", subscription_data(bob, sub_id="sub_01bob", customer="ctm_01bob")))
    client.force_login(alice)
    forged = {**page_checkout_data(client), "aura_account_id": str(bob.pk)}  # alice's page, bob's id
    attack = subscription_data(bob, sub_id="sub_01alice", customer="ctm_01alice", price=PRICE_TEAM, custom_data=forged)
    created = send(deliver, event("subscription.created", attack, occurred_at="2026-11-21T10:00:00Z"))
    canceled = send(deliver, event("subscription.canceled", {**attack, "status": "canceled"}, occurred_at="2026-11-22T10:00:00Z"))
    for row in (created, canceled):
        assert row.status == WebhookEvent.FAILED and "no valid signature" in row.error
        assert forged["aura_account_signature"] not in row.error
    assert current_plan(bob.pk).code == "pro"
    client.force_login(bob)
    assert client.post("/billing/portal/").status_code == 302
    assert paddle_api.calls[-1]["path"] == "/customers/ctm_01bob/portal-sessions"
