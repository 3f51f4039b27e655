"""A warm key is admitted in one Redis round trip, and every change to what admitted it still counts at once."""

import json
import os
import threading
import time

import pytest
from django.db import connection
from django.test import RequestFactory

from aura import cache as shared_cache
from gateway import limits, pipeline, services
from gateway.models import ApiKey, ProviderKey
from tests.conftest import subscribe

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="one round trip is a Redis script")

HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def call(client, key):
    return client.post("/v1/chat/completions", data=json.dumps(HELLO), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def commands() -> dict[str, int]:
    stats = shared_cache.redis().info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def sent_during(client, key) -> dict[str, int]:
    before = commands()
    response = call(client, key)
    assert response.status_code == 200
    after = commands()
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


def test_a_warm_key_costs_one_script_call_and_no_get(client, alice_key):
    call(client, alice_key)  # the first call finds the key in the database and learns whose it is
    second = sent_during(client, alice_key)  # (commands a script runs count as well)
    assert second.get("mget") == 1 and second.get("evalsha") == 1  # key, plan and vault, then the limits
    sent = sent_during(client, alice_key)
    assert sent.get("evalsha") == 1 and "mget" not in sent  # from now on the limits script brings them
    assert sent_during(client, alice_key).get("evalsha") == 1


def warm(client, key):
    for _ in range(3):
        assert call(client, key).status_code == 200


def admit_in_thread(request, admitted: list, failed: list) -> None:
    """One call's admission and finish, in a thread of its own, as a web worker runs them."""
    ctx = pipeline.start(request, "chat")
    try:
        pipeline.admit(ctx, request)
        admitted.append(ctx)
    except Exception as error:  # reported by the test: a thread's exception would be lost
        failed.append(repr(error))
    finally:
        pipeline.finish(ctx)
        pipeline.after_answer(ctx)  # what the server runs once the answer has left ("last used")
        connection.close()  # this thread's own database connection


def test_a_revoked_warm_key_is_refused_at_once(client, alice_key):
    warm(client, alice_key)
    services.api_key_revoke(key=ApiKey.objects.get(name="tests"))
    response = call(client, alice_key)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_warm_keys_new_limit_applies_to_its_next_call(client, alice_key):
    warm(client, alice_key)
    services.api_key_configure(key=ApiKey.objects.get(name="tests"), rpm_limit=7)
    assert call(client, alice_key)["x-ratelimit-limit-requests"] == "7"


def test_a_new_plan_applies_to_the_next_call(client, alice, alice_key):
    free = call(client, alice_key)["x-ratelimit-limit-requests"]
    warm(client, alice_key)
    subscribe(alice, "team")
    team = call(client, alice_key)["x-ratelimit-limit-requests"]
    assert int(team) > int(free)


def test_a_deleted_provider_key_is_gone_for_the_next_call(client, alice_key):
    warm(client, alice_key)
    services.provider_key_delete(key=ProviderKey.objects.get(provider="openai"))
    response = call(client, alice_key)
    assert response.status_code == 400 and response.json()["error"]["code"] == "provider_key_missing"


def test_a_failure_after_a_warm_admission_frees_its_slot(client, alice, alice_key, monkeypatch):
    """The script counts the call before the vault is read: if reading it fails, the call still ends."""
    warm(client, alice_key)

    def down(*args, **kwargs):
        raise RuntimeError("database away")

    monkeypatch.setattr(services, "sealed_vault", down)
    response = call(client, alice_key)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert shared_cache.redis().zcard(f"rl:f:{alice.pk}") == 0  # not held for the 15 minutes a dead node's call is


def test_a_node_new_to_a_cached_key_learns_it_on_its_first_call(client, alice_key):
    """Another node cached the key: this one reads whose it is, then the account's entries, and is warm after."""
    call(client, alice_key)
    services.api_keys_known_reset()  # as a freshly started node
    first = sent_during(client, alice_key)
    assert first.get("mget") == 2 and first.get("evalsha") == 1  # (a script's own reads count as gets)
    then = sent_during(client, alice_key)
    assert then.get("evalsha") == 1 and "mget" not in then


@pytest.mark.django_db(transaction=True)
def test_first_calls_arriving_together_learn_the_key_once(client, alice, alice_key, monkeypatch):
    """A burst on a node that has not seen the key: one call learns it, the others wait and are admitted warm."""
    call(client, alice_key)
    services.api_keys_known_reset()
    learned = []
    real_admit = services.api_key_admit

    def slow_admit(secret):
        learned.append(secret == alice_key)
        time.sleep(0.3)  # long enough for the other calls to arrive meanwhile
        return real_admit(secret)

    monkeypatch.setattr(services, "api_key_admit", slow_admit)
    request = RequestFactory().post("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    together = threading.Barrier(6)
    admitted, failed = [], []

    def one():
        together.wait()
        admit_in_thread(request, admitted, failed)

    before = commands()
    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not failed and [ctx.caller.user_id for ctx in admitted] == [alice.pk] * 6
    assert learned == [True]
    assert commands().get("mget", 0) - before.get("mget", 0) == 2  # the key, then the account's entries: once
    assert shared_cache.redis().zcard(f"rl:f:{alice.pk}") == 0  # every slot freed


@pytest.mark.django_db(transaction=True)
def test_calls_arriving_during_a_keys_first_admission_read_the_breakers_in_theirs(client, alice, alice_key, monkeypatch):
    """The first call has learned the key and waits on its limits round trip: calls that come meanwhile
    find the key known, and their own round trip reads the providers' breakers (none reads them apart)."""
    call(client, alice_key)
    services.api_keys_known_reset()
    pipeline._breaker_names.clear()
    real_enforce = limits.enforce
    first = threading.Event()

    def slow_first(*args, **kwargs):
        if not first.is_set():
            first.set()
            time.sleep(0.4)  # a slow round trip: the others come during it
        return real_enforce(*args, **kwargs)

    monkeypatch.setattr(limits, "enforce", slow_first)
    request = RequestFactory().post("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    admitted, failed = [], []
    threads = [threading.Thread(target=admit_in_thread, args=(request, admitted, failed)) for _ in range(4)]
    threads[0].start()
    assert first.wait(5)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not failed and len(admitted) == 4
    assert all(ctx.breakers is not None for ctx in admitted)


@pytest.mark.django_db(transaction=True)
def test_without_redis_calls_arriving_together_do_not_wait_for_each_other(client, alice, alice_key, monkeypatch, settings):
    """Nothing is learned without Redis (embedded mode), so no call waits for another to learn the key."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "alone"}}
    services.api_keys_known_reset()
    all_in = threading.Barrier(4, timeout=pipeline.LEARN_WAIT_SECONDS / 2)  # shorter than a wait for another call
    first_in = threading.Event()
    real_admit = services.api_key_admit

    def admit_together(secret):
        first_in.set()
        all_in.wait()  # breaks if any call waited for another instead of admitting itself
        return real_admit(secret)

    monkeypatch.setattr(services, "api_key_admit", admit_together)
    request = RequestFactory().post("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    admitted, failed = [], []
    threads = [threading.Thread(target=admit_in_thread, args=(request, admitted, failed)) for _ in range(4)]
    threads[0].start()
    assert first_in.wait(5)  # the first call is admitting the key when the others arrive
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert not failed and [ctx.caller.user_id for ctx in admitted] == [alice.pk] * 4
