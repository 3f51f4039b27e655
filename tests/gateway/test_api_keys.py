import hashlib
import json
import re
import threading
import uuid
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway import services
from gateway.models import ApiKey

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_the_cli_prints_only_the_new_key(alice):
    out = StringIO()
    call_command("aura", "key-issue", "--email", "alice@example.org", "--name", "ci", stdout=out)
    secret = out.getvalue().strip()
    assert re.fullmatch(r"aura_[A-Za-z0-9_\-]{43}", secret)
    key = ApiKey.objects.get()
    assert key.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert key.prefix == secret[:12] and key.name == "ci"


def test_the_page_shows_a_new_key_once(alice_client, alice):
    response = alice_client.post("/keys/", {"name": "backend", "once": "8d2c33a6-6f1e-4f43-9d1c-0d2f9a1b7e55"})
    secret = re.search(r'value="(aura_[^"]+)"', response.content.decode()).group(1)
    assert response["Cache-Control"] == "no-store"
    assert ApiKey.objects.get().digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in alice_client.get("/keys/").content.decode()


def test_an_empty_name_is_a_form_error(alice_client):
    response = alice_client.post("/keys/", {"name": "", "once": "8d2c33a6-6f1e-4f43-9d1c-0d2f9a1b7e55"})
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_plans_number_of_active_keys_is_enforced(alice_client, alice):
    """Free: 3 active keys. The 4th is a form error that keeps the name typed, and issues nothing;
    a revoked key frees its place; the CLI refuses the same way."""
    for name in ("one", "two", "three"):
        alice_client.post("/keys/", {"name": name, "once": str(uuid.uuid4())})
    response = alice_client.post("/keys/", {"name": "four", "once": str(uuid.uuid4())})
    body = response.content.decode()
    assert "The Free plan allows 3 active AURA keys and you have 3." in body and 'value="four"' in body
    assert not re.search(r'value="(aura_[^"]+)"', body)  # no key shown: none was issued
    assert ApiKey.objects.count() == 3
    with pytest.raises(CommandError, match="allows 3 active AURA keys"):
        call_command("aura", "key-issue", "--email", "alice@example.org", stdout=StringIO())
    alice_client.post(f"/keys/{ApiKey.objects.get(name='one').pk}/revoke/")
    response = alice_client.post("/keys/", {"name": "four", "once": str(uuid.uuid4())})
    assert re.search(r'value="(aura_[^"]+)"', response.content.decode())
    assert sorted(ApiKey.objects.filter(revoked__isnull=True).values_list("name", flat=True)) == ["four", "three", "two"]


def test_both_header_styles_authenticate(live_server, alice_key, upstream):
    url = live_server.url + "/v1/chat/completions"
    assert requests.post(url, json=HELLO, headers={"Authorization": f"Bearer {alice_key}"}, timeout=10).status_code == 200
    assert requests.post(url, json=HELLO, headers={"x-api-key": alice_key}, timeout=10).status_code == 200


def test_revoking_takes_effect_at_once(live_server, alice_key, alice_client, upstream):
    url = live_server.url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {alice_key}"}
    assert requests.post(url, json=HELLO, headers=headers, timeout=10).status_code == 200  # now cached
    key = ApiKey.objects.get()
    alice_client.post(f"/keys/{key.pk}/revoke/")
    assert requests.post(url, json=HELLO, headers=headers, timeout=10).status_code == 401
    key.refresh_from_db()
    assert key.revoked is not None


def test_last_used_is_recorded_without_a_write_per_request(alice, django_assert_max_num_queries):
    from billing.selectors import current_plan
    from gateway import limits

    _key, secret = services.api_key_issue(user=alice, name="x")
    caller, plan = services.api_key_authenticate(secret), current_plan(alice.pk)
    limits.enforce(caller, plan, "req_0", touch=limits.touch_key)  # the call's admission records the use
    first = ApiKey.objects.get().last_used
    assert first is not None
    with django_assert_max_num_queries(0):
        for n in range(1, 51):
            assert services.api_key_authenticate(secret) == caller
            limits.enforce(caller, plan, f"req_{n}", touch=limits.touch_key)
            limits.finish(caller.user_id, caller.key_id, f"req_{n}", 0, False)
    assert ApiKey.objects.get().last_used == first


def test_last_used_is_written_after_the_answer_has_left(live_server, alice_key, upstream, monkeypatch):
    """The once-a-minute database write never holds up the call that makes it due."""
    from gateway import limits

    release, written = threading.Event(), threading.Event()
    real_touch = limits.api_key_touch

    def slow_touch(key_id):
        release.wait(15)
        real_touch(key_id)
        written.set()

    monkeypatch.setattr(limits, "api_key_touch", slow_touch)
    try:
        answer = requests.post(
            live_server.url + "/v1/chat/completions", json=HELLO, headers={"Authorization": f"Bearer {alice_key}"}, timeout=5
        )
        assert answer.status_code == 200  # answered while the write waits
        assert ApiKey.objects.get().last_used is None
    finally:
        release.set()
    assert written.wait(10)
    assert ApiKey.objects.get().last_used is not None


def test_calls_within_a_minute_write_last_used_once(client, alice_key, upstream, monkeypatch):
    from gateway import limits

    written = []
    monkeypatch.setattr(limits, "api_key_touch", written.append)
    for _ in range(3):  # the test client closes each response (running what waits for that) before it returns
        answer = client.post(
            "/v1/chat/completions", data=json.dumps(HELLO), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {alice_key}"
        )
        assert answer.status_code == 200
    assert written == [ApiKey.objects.get().pk]


def test_bob_cannot_revoke_alices_key(client, alice, bob):
    key, _secret = services.api_key_issue(user=alice, name="mine")
    client.force_login(bob)
    assert client.post(f"/keys/{key.pk}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked is None


def test_bob_does_not_see_alices_keys(client, alice, bob):
    services.api_key_issue(user=alice, name="alices-secret-project")
    client.force_login(bob)
    assert "alices-secret-project" not in client.get("/keys/").content.decode()


def test_a_deactivated_user_cannot_call(alice, upstream):
    _key, secret = services.api_key_issue(user=alice, name="x")
    alice.is_active = False
    alice.save()
    assert services.api_key_authenticate(secret) is None


def test_the_settings_page_saves_every_setting(alice_client, alice):
    key, _secret = services.api_key_issue(user=alice, name="k")
    response = alice_client.post(
        f"/keys/{key.pk}/",
        {
            "compression": "aggressive",
            "cache_enabled": "on",
            "cache_ttl": "600",
            "routing_policy": "balanced",
            "reference_model": "gpt-4.1",
            "allowed_models": "gpt-4o-mini, claude-haiku-4-5, gemini-2.5-flash",
            "fallback_models": "claude-haiku-4-5\ngemini-2.5-flash",
        },
    )
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.compression, key.cache_enabled, key.cache_ttl, key.routing_policy, key.reference_model) == (
        "aggressive",
        True,
        600,
        "balanced",
        "gpt-4.1",
    )
    assert key.allowed_models == ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"]
    assert key.fallback_models == ["claude-haiku-4-5", "gemini-2.5-flash"]
    assert "lossy" in alice_client.get(f"/keys/{key.pk}/").content.decode()


def test_the_settings_radio_groups_are_fieldsets_named_by_their_legend(alice_client, alice):
    key, _secret = services.api_key_issue(user=alice, name="k")
    page = alice_client.get(f"/keys/{key.pk}/").content.decode()
    assert "<legend>Prompt compression</legend>" in page and "<legend>Routing policy for model “auto”</legend>" in page
    assert '<label for="">' not in page


def test_unknown_models_are_a_form_error(alice_client, alice):
    key, _secret = services.api_key_issue(user=alice, name="k")
    data = {
        "compression": "lossless",
        "cache_ttl": "60",
        "routing_policy": "cost",
        "reference_model": "gpt-4o",
        "fallback_models": "gpt-99",
    }
    response = alice_client.post(f"/keys/{key.pk}/", data)
    assert response.status_code == 200 and "Unknown model ids: gpt-99" in response.content.decode()
    response = alice_client.post(f"/keys/{key.pk}/", {**data, "fallback_models": "", "allowed_models": "foo bar/x, <script>x</script>"})
    body = response.content.decode()
    assert "Unknown model ids: foo bar/x, &lt;script&gt;x&lt;/script&gt;" in body and "<script>x" not in body
    # As chat names them: a listed model with its provider (kept under its catalog id), an unlisted one, a custom server's.
    named = "anthropic/claude-haiku-4-5, openai/gpt-5-preview, local/llama3.1:8b"
    assert alice_client.post(f"/keys/{key.pk}/", {**data, "fallback_models": "", "allowed_models": named}).status_code == 302
    key.refresh_from_db()
    assert key.allowed_models == ["claude-haiku-4-5", "openai/gpt-5-preview", "local/llama3.1:8b"]


def test_bob_cannot_see_alices_key_settings(client, alice, bob):
    key, _secret = services.api_key_issue(user=alice, name="k")
    client.force_login(bob)
    assert client.get(f"/keys/{key.pk}/").status_code == 404


def test_a_resubmitted_form_does_not_issue_a_second_key(alice_client):
    data = {"name": "backend", "once": "5b0c1f0e-59e4-4b39-8b0a-2f5d3c9e1a77"}
    alice_client.post("/keys/", data)
    response = alice_client.post("/keys/", data, follow=True)
    assert ApiKey.objects.count() == 1
    assert "That key was already issued and shown once." in response.content.decode()


def test_the_key_limit_is_explained_in_the_accounts_language(client, bob):
    client.force_login(bob)
    for name in ("one", "two", "three", "four"):
        response = client.post("/keys/", {"name": name, "once": str(uuid.uuid4())})
    assert response.context["form"].non_field_errors() == [
        "Тариф «Бесплатный» допускает не больше 3 активных ключей AURA, а у вас их 3. "
        "Отзовите ненужный ключ или смените тариф на странице оплаты."
    ]
    assert ApiKey.objects.filter(user=bob).count() == 3


def test_the_plans_limits_are_written_as_the_accounts_language_writes_numbers(client, alice, bob):
    for user, limit in ((alice, "200,000"), (bob, "200\xa0000")):
        key, _secret = services.api_key_issue(user=user, name="k")
        client.force_login(user)
        page = client.get(f"/keys/{key.pk}/").content.decode()
        assert f"{limit}.</p>" in page and page.count(limit) == 1


def test_the_keys_times_say_they_are_utc(alice_client, alice):
    key, _secret = services.api_key_issue(user=alice, name="k")
    page = alice_client.get("/keys/").content.decode()
    assert ">Created (UTC)</th>" in page and ">Last used (UTC)</th>" in page
    assert f'<time datetime="{key.created.isoformat()}">{key.created:%Y-%m-%d %H:%M}</time>' in page


def test_the_key_limit_links_to_the_billing_page(alice_client):
    for name in ("one", "two", "three", "four"):
        response = alice_client.post("/keys/", {"name": name, "once": str(uuid.uuid4())})
    assert re.search(
        r'class="form-errors" role="alert"><p>The Free plan allows 3 .*<a href="/billing/">Change plan on the billing page</a>',
        response.content.decode(),
    )
