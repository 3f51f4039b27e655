"""The billing page and its Paddle API calls, against a local stand-in for Paddle's API."""

import pytest
from django.core import mail

from billing.paddle import PaddleError
from billing.tasks import cancel_subscription_task, send_billing_email_task
from tests.conftest import subscribe
from tests.metrics.conftest import record

from .conftest import PRICE_TEAM


def test_a_free_account_sees_its_plan_and_usage(alice_client):
    body = alice_client.get("/billing/").content.decode()
    assert "Free" in body and "0 of 10,000 requests" in body and "See plans" in body
    # Free has every savings feature (billing.plans): the page offers only what upgrading adds.
    main = body[body.index("<main") :]  # (the page's meta description names every feature)
    assert "Upgrade for higher quotas and rate limits, and more AURA keys." in main and "response cache" not in main


def test_the_pricing_page_opens_paddle_checkout_with_the_account(alice_client, alice):
    response = alice_client.get("/pricing/")
    body = response.content.decode()
    assert 'src="https://cdn.paddle.com/paddle/v2/paddle.js"' in body
    assert f'data-checkout-price="{PRICE_TEAM}"' in body
    assert f'"account": {alice.pk}' in body and '"environment": "sandbox"' in body
    assert "https://cdn.paddle.com" in response["Content-Security-Policy"]


def test_the_public_pricing_page_has_no_external_script_without_checkout(client, db, settings):
    settings.PADDLE_CLIENT_TOKEN = ""
    assert "cdn.paddle.com" not in client.get("/pricing/").content.decode()


def test_cancel_calls_paddle(alice_client, alice, paddle_api):
    subscribe(alice, "pro")
    response = alice_client.post("/billing/cancel/", follow=True)
    assert "will end at the close of the current period" in response.content.decode()
    call = paddle_api.calls[-1]
    assert call["method"] == "POST" and call["path"] == f"/subscriptions/sub_{alice.pk:026d}/cancel"
    assert call["json"] == {"effective_from": "next_billing_period"}
    assert call["auth"] == "Bearer pdl_sdbx_apikey_test"


def test_change_plan_patches_the_subscription(alice_client, alice, paddle_api):
    subscribe(alice, "pro")
    alice_client.post("/billing/change/", {"plan": "team"})
    call = paddle_api.calls[-1]
    assert call["method"] == "PATCH"
    assert call["json"] == {"items": [{"price_id": PRICE_TEAM, "quantity": 1}], "proration_billing_mode": "prorated_immediately"}


def test_the_plan_on_offer_is_another_one_and_the_current_plan_is_not_bought_again(alice_client, alice, paddle_api):
    subscribe(alice, "pro")
    page = alice_client.get("/billing/").content.decode()
    assert '<option value="team">' in page and '<option value="pro">' not in page
    body = alice_client.post("/billing/change/", {"plan": "pro"}, follow=True).content.decode()
    assert "You are on the Pro plan already." in body and paddle_api.calls == []


def test_update_payment_method_returns_a_transaction_for_paddle_js(alice_client, alice, paddle_api):
    subscribe(alice, "pro", status="past_due")
    response = alice_client.post("/billing/payment-method/")
    assert response.json() == {"transaction_id": "txn_01hv8wptq8987qeep44cyrewp9"}


def test_the_portal_link_is_a_fresh_session(alice_client, alice, paddle_api):
    subscribe(alice, "pro")
    first = alice_client.post("/billing/portal/")
    alice_client.post("/billing/portal/")
    assert first.status_code == 302 and first.url.startswith("https://customer-portal.paddle.com/")
    assert [c["path"] for c in paddle_api.calls].count(f"/customers/ctm_{alice.pk:026d}/portal-sessions") == 2


def test_paddle_errors_are_retried_then_explained(alice_client, alice, paddle_api):
    subscribe(alice, "pro")
    paddle_api.fail = [503]
    alice_client.post("/billing/cancel/")
    assert len(paddle_api.calls) == 2  # retried once after the 503
    paddle_api.fail = [403]
    body = alice_client.post("/billing/cancel/", follow=True).content.decode()
    assert "Paddle refused the request (403 forbidden)" in body


def test_without_a_subscription_the_actions_are_404(alice_client, paddle_api):
    assert alice_client.post("/billing/cancel/").status_code == 404
    assert alice_client.post("/billing/portal/").status_code == 404
    assert paddle_api.calls == []


def test_invoices_of_another_account_are_404(client, alice, bob, paddle_api):
    from django.utils import timezone

    from billing.models import Transaction

    Transaction.objects.create(user=alice, paddle_transaction_id="txn_alice", status="completed", state_at=timezone.now())
    client.force_login(bob)
    assert client.get("/billing/invoices/txn_alice/").status_code == 404
    client.force_login(alice)
    assert client.get("/billing/invoices/txn_alice/").url.endswith("invoice.pdf")


def test_billing_emails_are_sent_once_in_the_users_language(bob, alice):
    subscribe(bob, "pro", status="past_due")
    send_billing_email_task.apply(args=[bob.pk, "payment-failed", 1])
    send_billing_email_task.apply(args=[bob.pk, "payment-failed", 1])
    assert len(mail.outbox) == 1
    assert "/billing/" in mail.outbox[0].body
    send_billing_email_task.apply(args=[alice.pk, "renewal-receipt", 2])
    assert mail.outbox[1].subject == "Your AURA subscription renewed"


def test_user_show_reports_plan_status_and_quota(alice):
    import json
    from io import StringIO

    from django.core.management import call_command

    subscribe(alice, "pro", status="past_due")
    out = StringIO()
    call_command("aura", "user-show", "--email", "alice@example.org", stdout=out)
    data = json.loads(out.getvalue())
    assert data["plan"] == "pro" and data["subscription_status"] == "past_due"
    assert data["quota"] == {"monthly_requests": 500_000, "used": 0, "requests_per_minute": 600}


def test_paddle_errors_are_explained_in_the_accounts_language(client, bob, paddle_api):
    subscribe(bob, "pro")
    client.force_login(bob)
    paddle_api.fail = [403]
    body = client.post("/billing/cancel/", follow=True).content.decode()
    assert "Paddle отклонил запрос (403 forbidden)." in body


def test_an_erased_accounts_subscription_is_cancelled_at_paddle_and_without_paddle_nothing_fails(alice, paddle_api, settings):
    subscription = subscribe(alice, "pro")
    cancel_subscription_task.run(alice.pk)
    assert paddle_api.calls[-1]["path"] == f"/subscriptions/{subscription.paddle_subscription_id}/cancel"
    paddle_api.fail = [403]
    with pytest.raises(PaddleError):  # refused: the task raises, so Celery retries it
        cancel_subscription_task.run(alice.pk)
    settings.PADDLE_API_KEY = ""
    calls = len(paddle_api.calls)
    assert cancel_subscription_task.run(alice.pk) is None  # no Paddle on this AURA: nothing to cancel, no retry
    assert len(paddle_api.calls) == calls


def test_billing_emails_name_the_plan_as_people_read_it(bob, alice):
    subscribe(bob, "team")
    send_billing_email_task.apply(args=[bob.pk, "plan-changed", 3])
    assert "Тариф: Team" in mail.outbox[-1].body and "team" not in mail.outbox[-1].body.replace("Team", "")
    subscribe(alice, "team", status="canceled")
    send_billing_email_task.apply(args=[alice.pk, "subscription-canceled", 4])
    assert "on the Free plan now" in mail.outbox[-1].body and "Plan:" not in mail.outbox[-1].body


def test_usage_counts_requests_as_the_quota_does(alice_client, alice):
    record(alice, request_id="req_fallback-1", status=503)  # an attempt that failed over to another provider
    record(alice, request_id="req_fallback")
    assert "1 of 10,000 requests" in alice_client.get("/billing/").content.decode()
