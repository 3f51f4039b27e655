"""The usage spool: records handed to Redis in the call's settle round trip, batched into PostgreSQL."""

import json
import os
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.db import connection
from django.utils import timezone

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
    return shared_cache.redis().lrange(spool.QUEUE, 0, -1)


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


def test_a_failed_attempt_and_its_fallback_are_both_spooled(spooling, client, alice_key, upstream):
    from gateway import services
    from gateway.models import ApiKey

    services.api_key_configure(key=ApiKey.objects.get(name="tests"), fallback_models=["claude-haiku-4-5"])
    upstream.fail_next(429, headers={"Retry-After": "30"})
    response = chat(client, alice_key)
    assert response.status_code == 200 and response["x-aura-route-reason"] == "fallback:429"
    assert len(queued()) == 2 and not UsageRecord.objects.exists()
    assert spool.drain_all() == 2
    failed, served = UsageRecord.objects.order_by("id")
    assert (failed.request_id, failed.status) == (response["x-request-id"] + "-1", 429)
    assert (served.request_id, served.status, served.model_used) == (response["x-request-id"], 200, "claude-haiku-4-5")


def test_a_client_that_leaves_mid_stream_is_spooled_too(spooling, live_server, alice_key, upstream):
    import socket

    upstream.chunk_delay_ms = 200
    try:
        host, port = live_server.url.removeprefix("http://").split(":")
        body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "ECHO:" + "word " * 30}]})
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            request = (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {alice_key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            )
            conn.sendall(request.encode())
            received = b""
            while received.count(b"data:") < 3:
                received += conn.recv(4096)
        deadline = time.time() + 15
        while not queued() and time.time() < deadline:
            time.sleep(0.1)
        spool.drain_all()
        record = UsageRecord.objects.get()
        assert record.status == 499 and record.error_class == "client_disconnected" and 1 <= record.completion_tokens < 30
    finally:
        upstream.chunk_delay_ms = 0


def test_a_batch_inserted_twice_is_one_record(spooling, client, alice_key):
    chat(client, alice_key)
    [entry] = queued()
    shared_cache.redis().rpush(spool.QUEUE, entry, entry)
    assert spool.drain_all() == 1
    assert UsageRecord.objects.count() == 1 and spool.pending() == 0


def test_a_flusher_that_died_mid_batch_loses_nothing(spooling, client, alice_key):
    for _ in range(3):
        chat(client, alice_key)
    client_ = shared_cache.redis()
    claims = spool.CLAIMS
    dead = f"{spool.QUEUE}:claim:dead"
    # A flusher claims the batch, then dies before its INSERT.
    assert len(client_.eval(spool._CLAIM, 3, spool.QUEUE, claims, dead, 100, time.time())) == 3
    assert spool.pending() == 0 and spool.drain() == 0
    assert spool.recover() == 0  # a fresh claim is left to its flusher
    assert spool.recover(stale_seconds=0) == 1
    assert spool.drain_all() == 3
    assert UsageRecord.objects.count() == 3
    assert client_.zcard(claims) == 0 and not client_.exists(dead)


def test_a_record_postgresql_refuses_is_dropped_and_the_rest_go_in(spooling, client, alice_key, caplog):
    chat(client, alice_key)
    chat(client, alice_key)
    [good, other] = queued()
    bad = json.loads(good)
    bad |= {"request_id": "req_bad", "status": 70_000}  # out of range for the column
    shared_cache.redis().lpush(spool.QUEUE, json.dumps(bad))
    assert spool.drain_all() == 2
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == sorted(json.loads(r)["request_id"] for r in (good, other))
    assert spool.pending() == 0
    assert "usage record req_bad refused by PostgreSQL (DataError)" in caplog.text
    assert [json.loads(r)["request_id"] for r in shared_cache.redis().lrange(spool.REFUSED, 0, -1)] == ["req_bad"]


def test_refused_records_live_no_longer_than_raw_records_and_go_with_an_erased_account(spooling, client, alice, bob, alice_key):
    from accounts.models import User
    from accounts.retention import run

    chat(client, alice_key)
    [record] = queued()
    shared_cache.redis().delete(spool.QUEUE)

    def refused(request_id, days_ago, owner):
        made = timezone.now() - timedelta(days=days_ago)
        return json.dumps({**json.loads(record), "request_id": request_id, "user_id": owner.pk, "created": made.isoformat()})

    def kept():
        return [json.loads(r)["request_id"] for r in shared_cache.redis().lrange(spool.REFUSED, 0, -1)]

    shared_cache.redis().rpush(spool.REFUSED, refused("req_old", 15, alice), refused("req_new", 13, alice), refused("req_bob", 1, bob))
    naive = {
        **json.loads(record),
        "request_id": "req_naive_old",
        "created": (timezone.now() - timedelta(days=20)).replace(tzinfo=None).isoformat(),
    }
    shared_cache.redis().rpush(spool.REFUSED, b"garbled, with no time to keep it by", b"[]", json.dumps(naive))
    audit, _ = run("purge-logs")
    assert kept() == ["req_new", "req_bob"] and audit.removed["refused_usage_records"] == 4

    User.objects.filter(pk=bob.pk).update(deletion_requested_at=timezone.now() - timedelta(days=31))
    audit, _ = run("erase-accounts")
    assert audit.account_ids == [bob.pk] and audit.removed["refused_usage_records"] == 1
    assert kept() == ["req_new"]


def test_postgresql_away_puts_the_batch_straight_back(spooling, client, alice_key, monkeypatch):
    from django.db import OperationalError

    chat(client, alice_key)
    chat(client, alice_key)

    def away(records):
        raise OperationalError("connection refused")

    monkeypatch.setattr(spool, "insert", away)
    with pytest.raises(OperationalError):
        spool.drain()
    assert spool.pending() == 2 and shared_cache.redis().zcard(spool.CLAIMS) == 0  # not left for a minute
    monkeypatch.undo()
    assert spool.drain_all() == 2


def test_values_no_column_would_take_are_made_to_fit(spooling, alice):
    from metrics.services import usage_record

    odd = {
        "user_id": alice.pk,
        "model_requested": "openai/x\x00" + json.loads('"\\ud800"') + "y" * 300,
        "status": 200,
        "error_class": "e" * 90,
        "prompt_tokens": -5,
        "completion_tokens": 10**12,
        "cost_usd": "1e30",
        "ip": "not-an-ip",
        "user_agent": "agent\x00",
    }
    shared_cache.redis().rpush(spool.QUEUE, spool.encode({**odd, "request_id": "req_spooled"}))
    assert spool.drain_all() == 1
    usage_record(**odd, request_id="req_direct")
    for record in UsageRecord.objects.all():
        assert record.model_requested.startswith("openai/x?y") and len(record.model_requested) == 120
        assert len(record.error_class) == 40 and record.user_agent == "agent"
        assert record.prompt_tokens == 0 and record.completion_tokens == 2**31 - 1
        assert record.cost_usd == Decimal("999999.99999999") and record.ip is None
    assert UsageRecord.objects.count() == 2


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

    with monkeypatch.context() as patched:  # every command, round trips too; undone before the fixtures flush Redis
        patched.setattr(redis.connection.AbstractConnection, "send_packed_command", refuse)
        response = chat(client, alice_key)
    assert response.status_code == 200
    assert UsageRecord.objects.get().request_id == response["x-request-id"]


def test_the_web_process_drains_its_own_spool(transactional_db, alice, upstream):
    """Under the Procfile's web command (gunicorn, gevent), records land without anything else running."""
    if connection.vendor != "postgresql":
        pytest.skip("the spool writes to PostgreSQL")
    from tests.conftest import wire

    key = wire(alice, upstream)
    with web_server(
        "--worker-class", "aura.gunicorn_worker.GeventWorker", "--workers", "2", AURA_USAGE_SPOOL="true", DATABASE_POOL_SIZE="4"
    ) as url:
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


def test_a_record_the_spool_cannot_encode_is_written_directly(spooling, client, alice_key, monkeypatch, caplog):
    def broken(fields):
        raise TypeError("cannot encode")

    monkeypatch.setattr(spool, "encode", broken)
    response = chat(client, alice_key)
    assert response.status_code == 200 and not queued()
    assert UsageRecord.objects.get().request_id == response["x-request-id"]
    assert f"usage record for {response['x-request-id']} not spooled: TypeError" in caplog.text
