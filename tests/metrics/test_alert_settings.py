"""The alert settings page: which alerts, thresholds, budgets and recipients."""

from decimal import Decimal

from metrics.models import AlertSettings, KeyBudget

VALID = {"plan_alerts": "on", "budget_alerts": "on", "thresholds": "50, 80, 100", "recipients": ""}


def test_the_page_shows_the_defaults(alice_client, alice_api_key):
    page = alice_client.get("/settings/alerts/").content.decode()
    assert 'value="50, 80, 100"' in page and "alice@example.org" in page
    assert "Monthly budget for the key “backend” (USD)" in page


def test_saving_choices_budgets_and_recipients(alice_client, alice, alice_api_key, django_capture_on_commit_callbacks):
    data = {
        **VALID,
        "monthly_budget_usd": "250",
        "thresholds": "90,25, 90",
        "recipients": "ops@example.org, cfo@example.org",
        f"key_{alice_api_key.pk}": "40.50",
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = alice_client.post("/settings/alerts/", data)
    assert response.status_code == 302 and response.url == "/settings/alerts/"
    prefs = AlertSettings.objects.get(user=alice)
    assert (prefs.plan_alerts, prefs.budget_alerts, prefs.anomaly_alerts) == (True, True, False)
    assert prefs.monthly_budget_usd == Decimal("250") and prefs.thresholds == [25, 90]
    assert prefs.pending_recipients() == ["ops@example.org", "cfo@example.org"]  # asked by email first
    assert prefs.recipient_list() == ["alice@example.org"]
    assert KeyBudget.objects.get().monthly_budget_usd == Decimal("40.50")
    assert len(callbacks) == 3  # the two questions, and the account's alerts checked again against the new settings


def test_clearing_a_key_budget_removes_it(alice_client, alice_api_key):
    KeyBudget.objects.create(api_key=alice_api_key, monthly_budget_usd=Decimal("5"))
    alice_client.post("/settings/alerts/", {**VALID, f"key_{alice_api_key.pk}": ""})
    assert not KeyBudget.objects.exists()


def test_no_recipients_means_the_account_address(alice_client, alice):
    alice_client.post("/settings/alerts/", VALID)
    assert AlertSettings.objects.get(user=alice).recipient_list() == ["alice@example.org"]


def test_bad_thresholds_and_addresses_are_form_errors(alice_client, alice):
    response = alice_client.post("/settings/alerts/", {**VALID, "thresholds": "80, lots", "recipients": "ops@, cfo@example.org"})
    page = response.content.decode()
    assert "Enter whole percentages separated by commas" in page and "“ops@” is not an email address." in page
    assert not AlertSettings.objects.exists()


def test_another_accounts_key_cannot_get_a_budget(alice_client, bob_api_key):
    alice_client.post("/settings/alerts/", {**VALID, f"key_{bob_api_key.pk}": "1"})
    assert not KeyBudget.objects.exists()


def test_the_page_needs_a_login(client):
    assert client.get("/settings/alerts/").status_code == 302


def test_the_smallest_budget_the_form_offers_is_accepted_and_below_it_refused(alice_client, alice, alice_api_key):
    response = alice_client.post("/settings/alerts/", {**VALID, "monthly_budget_usd": "0.01", f"key_{alice_api_key.pk}": "0.01"})
    assert response.status_code == 302
    assert AlertSettings.objects.get(user=alice).monthly_budget_usd == Decimal("0.01")
    assert KeyBudget.objects.get().monthly_budget_usd == Decimal("0.01")
    page = alice_client.post("/settings/alerts/", {**VALID, "monthly_budget_usd": "0"}).content.decode()
    assert "Ensure this value is greater than or equal to 0.01." in page
    assert 'min="0.01"' in page


def test_another_address_gets_alerts_only_once_its_owner_confirms(alice_client, alice, client, django_capture_on_commit_callbacks):
    import re

    from django.core import mail
    from django.test import Client

    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/settings/alerts/", {**VALID, "recipients": "Ops@example.org, cfo@example.org"})
    asked = {message.to[0]: message for message in mail.outbox}
    assert set(asked) == {"Ops@example.org", "cfo@example.org"}
    assert asked["cfo@example.org"].subject == "Confirm that you want AURA usage alerts for alice@example.org"
    page = alice_client.get("/settings/alerts/").content.decode()
    assert "Waiting for confirmation: Ops@example.org, cfo@example.org" in page
    link = re.search(r"http://[^/]+(/alerts/recipient/\S+/)", asked["Ops@example.org"].body).group(1)
    recipient = Client()  # the recipient needs no account
    opened = recipient.get(link)  # a mail scanner opening the link confirms nothing
    assert opened.status_code == 200 and "would like to send its usage alerts to ops@example.org" in opened.content.decode()
    assert AlertSettings.objects.get(user=alice).recipient_list() == ["alice@example.org"]
    confirmed = recipient.post(link)
    assert (
        confirmed.status_code == 200
        and "ops@example.org now receives the usage alerts of the AURA account alice@example.org" in confirmed.content.decode()
    )
    assert AlertSettings.objects.get(user=alice).recipient_list() == ["Ops@example.org"]
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/settings/alerts/", {**VALID, "recipients": "Ops@example.org, cfo@example.org"})
    assert len(mail.outbox) == 2  # saved again: nobody asked twice
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/settings/alerts/", {**VALID, "recipients": "cfo@example.org"})
    assert Client().post(link).status_code == 400  # taken off the list: its link no longer adds it
    assert AlertSettings.objects.get(user=alice).recipient_list() == ["alice@example.org"]
    assert Client().get("/alerts/recipient/not-a-token/").status_code == 400


def test_an_account_asks_at_most_twenty_addresses_a_day(alice_client, alice, django_capture_on_commit_callbacks):
    from django.core import mail

    from metrics.services import RECIPIENT_ASKS_PER_DAY

    for batch in range(3):  # listed, taken off, another ten listed: each new address is asked
        addresses = ", ".join(f"r{batch}-{n}@example.org" for n in range(10))
        with django_capture_on_commit_callbacks(execute=True):
            alice_client.post("/settings/alerts/", {**VALID, "recipients": addresses})
    assert len(mail.outbox) == RECIPIENT_ASKS_PER_DAY == 20
