"""Alerts fire once and only once per period or episode, and are emailed in the user's language."""

import smtplib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing import plans
from metrics import services
from metrics.models import Alert, AlertSettings, KeyBudget
from metrics.tasks import send_alert_task

from .conftest import history, hour_now, record


@pytest.fixture
def small_plan(monkeypatch):
    small = plans.Plan("free", "Free", 0, monthly_requests=10, requests_per_minute=60, api_keys=3, features=plans.FREE.features)
    monkeypatch.setattr("billing.selectors.FREE", small)
    monkeypatch.setitem(plans.PLANS, "free", small)
    return small


def check(user, now=None):
    return services.alerts_check(user=user, now=now or timezone.now())


def kinds(alerts):
    return sorted((alert.kind, alert.details.get("threshold")) for alert in alerts)


def calls(user, count, **fields):
    for _ in range(count):
        record(user, **fields)


# Plan limits


def test_the_plan_alert_fires_at_80_and_100_percent_once_each(alice, small_plan):
    calls(alice, 7)
    assert check(alice) == []
    calls(alice, 1)
    assert kinds(check(alice)) == [("plan_limit", 80)]
    assert check(alice) == []
    calls(alice, 2)
    assert kinds(check(alice)) == [("plan_limit", 100)]
    assert check(alice) == [] and Alert.objects.count() == 2


def test_failed_attempts_before_a_fallback_do_not_count_against_the_quota(alice, small_plan):
    calls(alice, 7)
    record(alice, request_id="req_x-1", status=502)
    assert check(alice) == []


def test_jumping_past_both_limits_emails_only_the_higher(alice, small_plan):
    calls(alice, 10)
    raised = check(alice)
    assert {(a.details["threshold"], a.email) for a in raised} == {(80, "skipped"), (100, "pending")}


def test_the_plan_banner_shows_on_the_cabinet_pages(alice_client, alice, small_plan):
    calls(alice, 9)
    for url in ("/dashboard/", "/usage/", "/dashboard/charts/", "/notifications/"):
        assert "You have used 90% of your plan" in alice_client.get(url).content.decode()
    calls(alice, 1)
    assert "You have used all 10 requests of your plan" in alice_client.get("/dashboard/").content.decode()


# Budgets


def test_budget_thresholds_fire_once_each_in_a_month(alice):
    AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("10"), thresholds=[50, 80, 100])
    calls(alice, 5, cost_usd=Decimal("1"))
    assert kinds(check(alice)) == [("budget", 50)]
    calls(alice, 3, cost_usd=Decimal("1"))
    assert kinds(check(alice)) == [("budget", 80)]
    assert check(alice) == []
    calls(alice, 2, cost_usd=Decimal("1"))
    assert kinds(check(alice)) == [("budget", 100)]


def test_a_new_budget_amount_arms_its_thresholds_again(alice):
    prefs = AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("10"), thresholds=[50])
    calls(alice, 5, cost_usd=Decimal("1"))
    assert len(check(alice)) == 1
    prefs.monthly_budget_usd = Decimal("8")
    prefs.save()
    assert len(check(alice)) == 1


def test_a_key_budget_alerts_on_that_keys_spend(alice, alice_api_key):
    AlertSettings.objects.create(user=alice, thresholds=[100])
    KeyBudget.objects.create(api_key=alice_api_key, monthly_budget_usd=Decimal("2"))
    calls(alice, 5, cost_usd=Decimal("1"))  # without the key
    calls(alice, 1, key=alice_api_key, cost_usd=Decimal("1"))
    assert check(alice) == []
    calls(alice, 1, key=alice_api_key, cost_usd=Decimal("1"))
    (alert,) = check(alice)
    assert alert.kind == "key_budget" and alert.api_key == alice_api_key and alert.details["key_name"] == "backend"


def test_switched_off_alerts_do_not_fire(alice, small_plan):
    AlertSettings.objects.create(user=alice, plan_alerts=False, budget_alerts=False, monthly_budget_usd=Decimal("0.01"))
    calls(alice, 10)
    assert check(alice) == []


# Anomalies


def spike_setup(user, requests=10):
    now = hour_now() + timedelta(minutes=30)
    history(user, hours=[hour_now() - timedelta(hours=1), hour_now()], requests=requests)
    return now


def test_a_spike_in_requests_is_alerted_once_per_episode(alice):
    now = spike_setup(alice)
    calls(alice, 150)
    (alert,) = check(alice, now)
    assert alert.kind == "usage_spike" and alert.details["over"] == ["requests"] and alert.details["usual_requests"] == 10
    assert check(alice, now) == []
    calls(alice, 150, at=now + timedelta(hours=1))  # the next hour is a spike too: the same episode
    history(alice, hours=[hour_now() + timedelta(hours=1)])
    assert check(alice, now + timedelta(hours=1)) == []
    alert.refresh_from_db()
    assert alert.last_hour == hour_now() + timedelta(hours=1)


def test_a_spike_after_a_quiet_hour_is_a_new_episode(alice):
    now = spike_setup(alice)
    calls(alice, 150)
    assert len(check(alice, now)) == 1
    later = now + timedelta(hours=2)
    history(alice, hours=[hour_now() + timedelta(hours=1), hour_now() + timedelta(hours=2)])
    calls(alice, 150, at=later)
    assert len(check(alice, later)) == 1 and Alert.objects.filter(kind="usage_spike").count() == 2


def test_a_spike_in_spend_is_alerted(alice):
    now = spike_setup(alice)
    calls(alice, 20, cost_usd=Decimal("0.10"))  # $2 in the hour, usually $0.01
    (alert,) = check(alice, now)
    assert alert.details["over"] == ["cost"]


def test_small_accounts_do_not_alert_on_noise(alice):
    now = spike_setup(alice, requests=1)
    calls(alice, 60)  # sixty times the usual, but under the floor of 100 requests an hour
    assert check(alice, now) == []


def test_a_new_account_has_no_baseline_to_spike_from(alice):
    history(alice, hours=[hour_now()], days=3)
    calls(alice, 500)
    assert [a.kind for a in check(alice)] == []


def test_an_error_spike_is_alerted_once(alice):
    now = spike_setup(alice)
    calls(alice, 15)
    calls(alice, 10, status=502, error_class="upstream_error")
    (alert,) = check(alice, now)
    alert.refresh_from_db()
    assert alert.kind == "error_spike" and alert.details["rate"] == 0.4 and alert.details["classes"] == [["upstream_error", 10]]
    assert check(alice, now) == []


def test_few_failures_are_not_an_error_spike(alice):
    now = spike_setup(alice)
    calls(alice, 10, status=502)  # half failed, but fewer than 20 calls
    assert check(alice, now) == []


def test_a_usual_error_rate_is_not_a_spike(alice):
    now = hour_now() + timedelta(minutes=30)
    history(alice, hours=[hour_now() - timedelta(hours=1), hour_now()], requests=40, errors=16)
    calls(alice, 24)
    calls(alice, 16, status=502)
    assert check(alice, now) == []


# Emails


def test_new_alerts_are_emailed_after_commit(alice, small_plan, django_capture_on_commit_callbacks):
    calls(alice, 8)
    with django_capture_on_commit_callbacks() as callbacks:
        check(alice)
    assert len(callbacks) == 1


def test_an_alert_email_is_sent_once(alice, small_plan):
    calls(alice, 8)
    (alert,) = check(alice)
    send_alert_task.apply(args=[alert.pk])
    send_alert_task.apply(args=[alert.pk])
    assert len(mail.outbox) == 1
    alert.refresh_from_db()
    assert alert.email == "sent" and alert.sent_at is not None and alert.sent_to == ["alice@example.org"]


def test_every_recipient_gets_it_and_a_retry_skips_those_done(alice, small_plan, monkeypatch):
    confirmed = ["ops@example.org", "cfo@example.org"]
    AlertSettings.objects.create(user=alice, recipients="ops@example.org, cfo@example.org", confirmed_recipients=confirmed)
    calls(alice, 8)
    (alert,) = check(alice)
    sent = []

    def flaky(template, *, to, **kwargs):
        if to == "cfo@example.org" and not sent.count(to):
            sent.append(to)
            raise smtplib.SMTPServerDisconnected("gone")
        sent.append(to)

    monkeypatch.setattr("metrics.services.send_email", flaky)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        services.alert_send(alert=alert)
    services.alert_send(alert=alert)
    assert sent == ["ops@example.org", "cfo@example.org", "cfo@example.org"]
    alert.refresh_from_db()
    assert alert.sent_to == ["ops@example.org", "cfo@example.org"]


def test_smtp_errors_are_retried_with_backoff():
    assert smtplib.SMTPException in send_alert_task.autoretry_for and send_alert_task.retry_backoff


@pytest.mark.parametrize("kind", ["plan", "budget", "key", "spike", "errors"])
def test_every_alert_email_links_to_the_alert_settings(alice, alice_api_key, small_plan, kind):
    AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("0.01"), thresholds=[100])
    KeyBudget.objects.create(api_key=alice_api_key, monthly_budget_usd=Decimal("0.01"))
    history(alice, hours=[hour_now()])
    calls(alice, 60, key=alice_api_key)
    calls(alice, 60, key=alice_api_key, status=502, error_class="upstream_error")
    wanted = {"plan": "plan_limit", "budget": "budget", "key": "key_budget", "spike": "usage_spike", "errors": "error_spike"}[kind]
    alert = next(a for a in check(alice) if a.kind == wanted and a.email == "pending")
    send_alert_task.apply(args=[alert.pk])
    (message,) = mail.outbox
    assert "http://127.0.0.1:8000/settings/alerts/" in message.body
    assert 'href="http://127.0.0.1:8000/settings/alerts/"' in message.alternatives[0][0]


def test_a_budget_email_tells_the_threshold_passed_from_the_share_spent(alice, bob, bob_api_key):
    AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("0.01"), thresholds=[1])
    KeyBudget.objects.create(api_key=bob_api_key, monthly_budget_usd=Decimal("0.01"))
    AlertSettings.objects.create(user=bob, thresholds=[1])
    record(alice, cost_usd=Decimal("0.00133"))
    record(bob, key=bob_api_key, cost_usd=Decimal("0.00133"))
    for user in (alice, bob):
        (alert,) = check(user)
        send_alert_task.apply(args=[alert.pk])
    english, russian = mail.outbox
    assert "have passed 1% of your $0.01 monthly budget: this month they have cost $0.0013, 13.0% of the budget." in english.body
    assert "this month they have cost $0.0013, 13.0% of the budget." in english.alternatives[0][0]
    assert "«bobs» превысили 1% его месячного бюджета в $0,01: в этом месяце они обошлись в $0,0013, это 13,0% бюджета." in russian.body


def test_emails_are_in_the_users_language(alice, bob, small_plan):
    calls(alice, 8)
    calls(bob, 8)
    for user in (alice, bob):
        (alert,) = check(user)
        send_alert_task.apply(args=[alert.pk])
    english, russian = mail.outbox
    assert english.subject == "You have used 80% of this month's AURA requests"
    assert '<div lang="en">' in english.alternatives[0][0] and '<html lang="en">' in english.alternatives[0][0]
    assert '<div lang="ru">' in russian.alternatives[0][0] and russian.to == ["bob@example.org"]
    assert "8 of the 10 requests" in english.body


def test_the_cabinet_shows_a_budget_alert_with_the_share_spent_and_sub_cent_amounts(alice_client, alice):
    AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("0.01"), thresholds=[1])
    record(alice, cost_usd=Decimal("0.00133"))
    check(alice)
    page = alice_client.get("/notifications/").content.decode()
    assert "Spend passed 1% of your monthly budget: $0.0013 of $0.01 (13.0%)." in page
    record(alice, cost_usd=Decimal("0.02"))
    banner = alice_client.get("/dashboard/").content.decode()
    assert "This month's spend, $0.0213, is over your budget of $0.01." in banner
