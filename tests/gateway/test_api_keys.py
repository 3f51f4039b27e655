import hashlib
import re
from io import StringIO

import requests
from django.core.management import call_command

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
    response = alice_client.post("/keys/", {"name": "backend"})
    secret = re.search(r'value="(aura_[^"]+)"', response.content.decode()).group(1)
    assert response["Cache-Control"] == "no-store"
    assert ApiKey.objects.get().digest == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in alice_client.get("/keys/").content.decode()


def test_an_empty_name_is_a_form_error(alice_client):
    response = alice_client.post("/keys/", {"name": ""})
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


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


def test_last_used_is_recorded_without_a_write_per_request(alice, upstream, live_server, django_assert_max_num_queries):
    _key, secret = services.api_key_issue(user=alice, name="x")
    assert services.api_key_authenticate(secret) is not None
    first = ApiKey.objects.get().last_used
    assert first is not None
    with django_assert_max_num_queries(0):
        for _ in range(50):
            services.api_key_authenticate(secret)


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
