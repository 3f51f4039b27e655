from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway import services
from gateway.models import ProviderKey
from metrics.models import UsageRecord


def add(client, mock, **fields):
    data = {"provider": "openai", "api_key": "sk-page-secret-0123456789", "base_url": f"{mock.url}/v1", "label": "", **fields}
    return client.post("/providers/", data, follow=True)


def test_adding_a_key_checks_it_and_shows_it_masked(alice_client, upstream):
    body = add(alice_client, upstream).content.decode()
    assert "the provider accepted it" in body
    assert "••••6789" in body and "sk-page-secret" not in body
    key = ProviderKey.objects.get()
    assert key.check_status == "ok"
    assert upstream.requests[-1]["path"] == "/v1/models"


def test_a_key_the_provider_rejects_is_saved_and_flagged(alice_client, upstream):
    upstream.fail_next(401)
    body = add(alice_client, upstream).content.decode()
    assert "the provider rejected it" in body
    assert ProviderKey.objects.get().check_status == "rejected"


def test_an_unreachable_provider_says_the_key_was_not_checked(alice_client, upstream):
    body = add(alice_client, upstream, base_url="http://127.0.0.1:9/v1").content.decode()
    assert "was not checked" in body
    assert ProviderKey.objects.get().check_status == "unchecked"


def test_a_custom_server_needs_a_base_url_and_label(alice_client, upstream):
    body = add(alice_client, upstream, provider="custom", base_url="").content.decode()
    assert "needs its base URL" in body and "Give the server a label" in body
    assert not ProviderKey.objects.exists()


def test_a_duplicate_is_a_form_error(alice_client, upstream):
    add(alice_client, upstream)
    body = add(alice_client, upstream).content.decode()
    assert "You already have a key for this provider" in body
    assert ProviderKey.objects.count() == 1


def test_a_value_too_long_gets_that_error_alone(alice_client, upstream):
    body = add(alice_client, upstream, provider="custom", label="x" * 5000, base_url="http://127.0.0.1/" + "v" * 300).content.decode()
    assert "Give the server a label" not in body and "needs its base URL" not in body
    assert body.count("at most") == 2 and not ProviderKey.objects.exists()


def test_private_addresses_are_refused_when_not_allowed(alice_client, upstream, settings):
    settings.AURA_UPSTREAM_ALLOW_PRIVATE = False
    body = add(alice_client, upstream, base_url="http://169.254.169.254/v1").content.decode()
    assert "private or local address" in body
    # IPv6 addresses that carry a private IPv4 one: NAT64 (is_global passes it), mapped, compatible, 6to4.
    for carried in ("64:ff9b::a9fe:a9fe", "::ffff:127.0.0.1", "::10.0.0.1", "2002:7f00:1::1"):
        assert "private or local address" in add(alice_client, upstream, base_url=f"https://[{carried}]/v1").content.decode()
    assert not ProviderKey.objects.exists()


def test_plain_http_is_refused_when_private_servers_are_not_allowed(alice_client, upstream, settings):
    # The privacy policy: keys are transmitted only over TLS. (A self-hosted AURA beside its own servers,
    # and the demo, allow private addresses and plain http with AURA_UPSTREAM_ALLOW_PRIVATE.)
    settings.AURA_UPSTREAM_ALLOW_PRIVATE = False
    body = add(alice_client, upstream, base_url="http://93.184.215.14/v1").content.decode()
    assert "must start with https://" in body
    assert not ProviderKey.objects.exists()


def test_a_key_saved_with_a_plain_http_url_is_not_sent_once_that_is_refused(sdk, upstream, settings):
    import openai

    settings.AURA_UPSTREAM_ALLOW_PRIVATE = False  # the keys were saved under http://127.0.0.1 while it was allowed
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["code"] == "insecure_base_url" and "Change it to https://" in raised.value.body["message"]
    assert upstream.requests == []  # nothing, and so no key, went out over plain http
    assert not UsageRecord.objects.exists()  # and no upstream call to account for


def test_replace_overwrites_the_secret(alice_client, upstream):
    add(alice_client, upstream)
    key = ProviderKey.objects.get()
    old = bytes(key.ciphertext)
    alice_client.post(f"/providers/{key.pk}/", {"api_key": "sk-replacement-key-9999"})
    key.refresh_from_db()
    assert key.last4 == "9999" and bytes(key.ciphertext) != old


def test_delete_removes_it(alice_client, upstream):
    add(alice_client, upstream)
    key = ProviderKey.objects.get()
    alice_client.post(f"/providers/{key.pk}/delete/")
    assert not ProviderKey.objects.exists()


def test_bob_gets_404_for_alices_key(alice_client, client, bob, upstream):
    add(alice_client, upstream)
    key = ProviderKey.objects.get()
    client.force_login(bob)
    assert client.get(f"/providers/{key.pk}/").status_code == 404
    assert client.post(f"/providers/{key.pk}/", {"api_key": "sk-hijack-000000"}).status_code == 404
    assert client.post(f"/providers/{key.pk}/delete/").status_code == 404
    assert ProviderKey.objects.get().last4 == "6789"


def test_bob_cannot_use_alices_provider_keys(bob, live_server, upstream, alice_key):
    import requests

    from gateway.services import api_key_issue

    _k, bobs_key = api_key_issue(user=bob, name="bob")
    response = requests.post(
        live_server.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {bobs_key}"},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "provider_key_missing"


def test_the_cli_adds_and_replaces(alice, upstream):
    out = StringIO()
    args = ["aura", "provider-add", "--email", "alice@example.org", "--provider", "openai", "--base-url", f"{upstream.url}/v1"]
    call_command(*args, "--api-key", "sk-cli-first-key-1111", stdout=out)
    call_command(*args, "--api-key", "sk-cli-second-key-2222", stdout=out)
    lines = [line for line in out.getvalue().splitlines() if not line.startswith("note: ")]
    assert lines[0] == "added openai key ••••1111 (checked with the provider)"
    assert lines[1] == "replaced openai key ••••2222 (checked with the provider)"
    assert ProviderKey.objects.get().last4 == "2222"
    assert "sk-cli" not in out.getvalue()


def test_without_redis_the_cli_says_when_a_running_server_sees_its_change(alice, upstream, settings):
    args = ["aura", "provider-add", "--email", "alice@example.org", "--provider", "openai", "--base-url", f"{upstream.url}/v1"]
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cli-note"}}
    out = StringIO()
    call_command(*args, "--api-key", "sk-cli-first-key-1111", stdout=out)
    assert (
        out.getvalue().splitlines()[-1]
        == "note: without REDIS_URL a running AURA server sees this within 5 minute(s), or at once when restarted"
    )


def test_the_cli_refuses_a_custom_server_without_url(alice):
    with pytest.raises(CommandError, match="needs its base URL"):
        call_command("aura", "provider-add", "--email", "alice@example.org", "--provider", "custom", "--api-key", "sk-xxxxxxxxxxxx")


def test_the_cli_refuses_what_the_cabinet_refuses(alice, upstream):
    """The cabinet's own form checks the command line's options: a custom server needs a label, a
    label is a slug, a URL is a URL."""
    base = ["aura", "provider-add", "--email", "alice@example.org", "--api-key", "sk-xxxxxxxxxxxx"]
    with pytest.raises(CommandError, match="--label: Give the server a label"):
        call_command(*base, "--provider", "custom", "--base-url", f"{upstream.url}/v1")
    with pytest.raises(CommandError, match="--label: Enter a valid “slug”"):
        call_command(*base, "--provider", "custom", "--base-url", f"{upstream.url}/v1", "--label", "my server")
    with pytest.raises(CommandError, match="--base-url: Enter a valid URL"):
        call_command(*base, "--provider", "openai", "--base-url", "not a url")
    assert not ProviderKey.objects.exists()
    call_command(*base, "--provider", "custom", "--base-url", f"{upstream.url}/v1", "--label", "vllm", stdout=StringIO())
    assert ProviderKey.objects.get().label == "vllm"


def test_a_custom_server_is_called_by_its_label(alice, live_server, upstream):
    from openai import OpenAI

    from tests.gateway.conftest import wire

    secret = wire(alice, upstream, providers=("custom",))
    sdk = OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)
    completion = sdk.chat.completions.create(model="local/llama3.3", messages=[{"role": "user", "content": "ECHO:from ollama"}])
    assert completion.choices[0].message.content == "from ollama"
    assert upstream.requests[-1]["json"]["model"] == "llama3.3"


def test_a_custom_servers_model_can_be_the_keys_only_allowed_one(alice, live_server, upstream):
    import openai

    from gateway.models import ApiKey
    from tests.gateway.conftest import wire

    secret = wire(alice, upstream, providers=("custom", "openai"))
    services.api_key_configure(key=ApiKey.objects.get(user=alice), allowed_models=["local/llama3.3"])
    sdk = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)
    completion = sdk.chat.completions.create(model="local/llama3.3", messages=[{"role": "user", "content": "ECHO:allowed"}])
    assert completion.choices[0].message.content == "allowed"
    assert sdk.models.retrieve("local/llama3.3").id == "local/llama3.3"
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_a_russian_account_gets_the_save_errors_in_russian_on_the_field_they_are_about(client, bob, upstream, settings):
    settings.AURA_UPSTREAM_ALLOW_PRIVATE = False
    client.force_login(bob)
    response = add(client, upstream, base_url="http://93.184.215.14/v1")
    russian = "Базовый URL должен начинаться с https://: AURA передаёт ваш ключ только по TLS."
    assert response.context["form"].errors["base_url"] == [russian]
    assert '<html lang="ru"' in response.content.decode()
    assert '<option value="custom">OpenAI-совместимый сервер</option>' in client.get("/providers/").content.decode()
    response = add(client, upstream, provider="custom", base_url="", label="vllm")
    assert "Для OpenAI-совместимого сервера нужно указать базовый URL." in response.content.decode()
    assert not ProviderKey.objects.exists()


def _keys_sent(upstream) -> list[str]:
    return [r["headers"]["authorization"].removeprefix("Bearer ") for r in upstream.requests if r["path"] == "/v1/chat/completions"]


def test_a_label_picks_one_of_several_keys_of_a_provider(alice, live_server, upstream):
    from openai import OpenAI

    base = f"{upstream.url}/v1"
    services.provider_key_save(user=alice, provider="openai", api_key="sk-main-0123456789", base_url=base)
    services.provider_key_save(user=alice, provider="openai", api_key="sk-dev-0123456789", base_url=base, label="dev")
    _key, secret = services.api_key_issue(user=alice, name="tests")
    sdk = OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)
    hello = [{"role": "user", "content": "hi"}]
    for model in ("gpt-4o-mini", "openai/gpt-4o-mini", "dev/gpt-4o-mini", "dev/gpt-4o-unlisted-2027"):
        sdk.chat.completions.create(model=model, messages=hello)
    # The key without a label serves names without one, though the labelled key was added after it.
    assert _keys_sent(upstream) == ["sk-main-0123456789", "sk-main-0123456789", "sk-dev-0123456789", "sk-dev-0123456789"]
    assert upstream.requests[-1]["json"]["model"] == "gpt-4o-unlisted-2027"
    assert sdk.models.retrieve("dev/gpt-4o-mini").id == "dev/gpt-4o-mini"


def test_with_only_labelled_keys_the_one_added_last_serves_names_without_a_label(alice, live_server, upstream):
    import openai

    base = f"{upstream.url}/v1"
    services.provider_key_save(user=alice, provider="openai", api_key="sk-first-0123456789", base_url=base, label="first")
    services.provider_key_save(user=alice, provider="openai", api_key="sk-second-0123456789", base_url=base, label="second")
    first = ProviderKey.objects.get(label="first")
    services.provider_key_save(
        user=alice, provider="openai", api_key="sk-first-new-0123456789", base_url=base, label="first", instance=first
    )
    _key, secret = services.api_key_issue(user=alice, name="tests")
    sdk = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert _keys_sent(upstream) == ["sk-second-0123456789"]  # replacing a secret does not make a key the newest
    with pytest.raises(openai.NotFoundError):  # a label no key has
        sdk.chat.completions.create(model="third/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_the_keys_page_says_which_key_serves_model_ids_without_a_label(alice_client, upstream):
    def rows() -> dict[str, str]:
        body = alice_client.get("/providers/").content.decode()
        cells = [row.split("</tr>")[0] for row in body.split("<tr>")]
        return {row.split("<code>••••")[1][:4]: row for row in cells if "<code>••••" in row}

    add(alice_client, upstream, label="dev", api_key="sk-dev-secret-0000aaaa")
    add(alice_client, upstream, provider="custom", label="vllm", api_key="sk-vllm-secret-0000cccc")
    assert "without a label" in rows()["aaaa"] and "dev/…" in rows()["aaaa"]  # the only OpenAI key
    assert "without a label" not in rows()["cccc"] and "vllm/…" in rows()["cccc"]
    add(alice_client, upstream, label="", api_key="sk-main-secret-0000bbbb")
    assert "without a label" in rows()["bbbb"] and "without a label" not in rows()["aaaa"]


def test_labels_name_one_key_and_no_provider(alice_client, upstream):
    body = add(alice_client, upstream, label="anthropic").content.decode()
    assert "already names a provider in model ids" in body
    add(alice_client, upstream, label="team")
    body = add(alice_client, upstream, provider="mistral", label="team").content.decode()
    assert "Another of your provider keys has this label" in body
    assert list(ProviderKey.objects.values_list("provider", "label")) == [("openai", "team")]


def test_a_base_url_whose_name_now_leads_to_a_private_address_is_not_called(alice, live_server, upstream, settings):
    """A name that was public when its key was saved can resolve elsewhere later (DNS rebinding):
    the address is checked when AURA connects, not only when the key is saved."""
    import openai

    port = upstream.url.rsplit(":", 1)[1]
    services.provider_key_save(user=alice, provider="openai", api_key="sk-rebound-0123456789", base_url=f"https://localhost:{port}/v1")
    _key, secret = services.api_key_issue(user=alice, name="tests")
    settings.AURA_UPSTREAM_ALLOW_PRIVATE = False
    sdk = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["code"] == "private_base_url" and "private or local address" in raised.value.body["message"]
    assert upstream.requests == [] and not UsageRecord.objects.exists()
