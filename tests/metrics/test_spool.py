"""The usage spool: records handed to Redis in the call's settle round trip, batched into PostgreSQL."""

import json
import os
import time

import pytest
import requests
from django.db import connection

from aura import cache as shared_cache
from metrics import spool
from metrics.models import UsageRecord
from metrics.tasks import drain_usage_spool_task
from tests.conftest import web_server

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the spool is a Redis list")

CANARY = "spool-canary-3f9c1d: the secret plan is to buy more GPUs"


@pytest.fixture
def spooling(settings):
    if connection.vendor != "postgresql":
        pytest.skip("the spool writes to PostgreSQL")
    settings.AURA_USAGE_SPOOL = True
    assert spool.enabled()


def chat(client, key, **extra):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY}], **extra}
    return client.post("/v1/chat/completions", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def queued() -> list[bytes]:
    return shared_cache.redis().lrange(spool.queue_key(), 0, -1)


def test_a_call_spools_its_record_and_a_drain_writes_it_once(spooling, client, alice, alice_key):
    response = chat(client, alice_key, user="end-user-1")
    assert response.status_code == 200
    assert not UsageRecord.objects.exists()  # not written on the request path
    [entry] = queued()
    assert CANARY.encode() not in entry and alice_key.encode() not in entry  # counts and ids, no content

    assert drain_usage_spool_task() is None  # the beat's safety net drains it as the web flusher would
    record = UsageRecord.objects.get()
    assert record.request_id == response["x-request-id"]
    assert record.user == alice and record.api_key.name == "tests"
    assert f"{record.cost_usd:.8f}" == response["x-aura-cost-usd"]
    assert record.tokens_original == int(response["x-aura-tokens-original"]) and record.prompt_tokens > 0
    assert record.status == 200 and record.model_used == "gpt-4o-mini" and record.ip == "127.0.0.1"
    assert spool.pending() == 0
    assert spool.drain_all() == 0 and UsageRecord.objects.count() == 1


def test_a_stream_spools_its_record_when_it_ends(spooling, live_server, alice_key):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY}]}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    with requests.post(
        live_server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {alice_key}"}, stream=True, timeout=20
    ) as response:
        assert response.content.endswith(b"data: [DONE]\n\n")
    deadline = time.time() + 5
    while not queued() and time.time() < deadline:  # settled as the server closes the stream
        time.sleep(0.02)
    assert len(queued()) == 1
    spool.drain_all()
    record = UsageRecord.objects.get()
    assert record.stream and record.completion_tokens > 0 and record.request_id == response.headers["x-request-id"]


def test_a_batch_inserted_twice_is_one_record(spooling, client, alice_key):
    chat(client, alice_key)
    [entry] = queued()
    shared_cache.redis().rpush(spool.queue_key(), entry, entry)
    assert spool.drain_all() == 1
    assert UsageRecord.objects.count() == 1 and spool.pending() == 0


def test_a_flusher_that_died_mid_batch_loses_nothing(spooling, client, alice_key):
    for _ in range(3):
        chat(client, alice_key)
    client_ = shared_cache.redis()
    claims = shared_cache.raw_key("usage:spool:claims")
    dead = shared_cache.raw_key("usage:spool:claim:dead")
    # A flusher claims the batch, then dies before its INSERT.
    assert len(client_.eval(spool._CLAIM, 3, spool.queue_key(), claims, dead, 100, time.time())) == 3
    assert spool.pending() == 0 and spool.drain() == 0
    assert spool.recover() == 0  # a fresh claim is left to its flusher
    assert spool.recover(stale_seconds=0) == 1
    assert spool.drain_all() == 3
    assert UsageRecord.objects.count() == 3
    assert client_.zcard(claims) == 0 and not client_.exists(dead)


def test_an_erased_account_loses_its_records_and_blocks_no_one(spooling, client, alice, alice_key, bob, upstream):
    from tests.conftest import wire

    bob_key = wire(bob, upstream)
    chat(client, alice_key)
    chat(client, bob_key)
    bob.delete()
    alice.api_keys.all().delete()  # a deleted key: its records keep no key
    assert spool.drain_all() == 1
    record = UsageRecord.objects.get()
    assert record.user == alice and record.api_key is None
    assert spool.pending() == 0


def test_without_redis_at_the_hand_off_the_call_writes_its_record(spooling, client, alice_key, monkeypatch):
    import redis

    def refuse(*args, **kwargs):
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(redis.client.Pipeline, "execute", refuse)
    monkeypatch.setattr(redis.Redis, "rpush", refuse)
    response = chat(client, alice_key)
    assert response.status_code == 200
    assert UsageRecord.objects.get().request_id == response["x-request-id"]


def test_the_web_process_drains_its_own_spool(transactional_db, alice, upstream):
    """Under the Procfile's web command (gunicorn, gevent), records land without anything else running."""
    if connection.vendor != "postgresql":
        pytest.skip("the spool writes to PostgreSQL")
    from tests.conftest import wire

    key = wire(alice, upstream)
    with web_server("--worker-class", "gevent", "--workers", "2", AURA_USAGE_SPOOL="true", DATABASE_POOL_SIZE="4") as url:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": CANARY}]}
        ids = set()
        with requests.Session() as session:
            for _ in range(20):
                answer = session.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20)
                assert answer.status_code == 200
                ids.add(answer.headers["x-request-id"])
        deadline = time.time() + 15
        while UsageRecord.objects.count() < len(ids) and time.time() < deadline:
            time.sleep(0.1)
        assert set(UsageRecord.objects.values_list("request_id", flat=True)) == ids
        assert spool.pending() == 0
