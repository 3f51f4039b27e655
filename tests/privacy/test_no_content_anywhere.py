"""Unique canary strings sent every way a prompt can travel must appear nowhere AURA keeps anything.

Plain, streamed, cached, failed upstream (the upstream echoing the prompt),
malformed JSON and embeddings calls, and a provider key that is itself a canary;
then the database (every table), the captured DEBUG logs, Redis (every
database: cache and Celery broker), the export, the error responses and the
admin pages are searched.
"""

import json
import logging
import os
import zipfile
from io import BytesIO

import pytest
import requests
from django.conf import settings
from django.db import connection

from accounts.models import DataExport, User
from gateway import services
from tests.conftest import wire

PROMPT = "CANARY-PROMPT-a81f"
ANSWER = "CANARY-ANSWER-77c2"
KEY = "sk-CANARY-KEY-0b9d44e1f0"


def table_dump() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from the schema itself)
            chunks.append(repr(cursor.fetchall()))
    return "\n".join(chunks)


def redis_dump() -> bytes:
    import redis

    found = []
    for db in range(16):
        client = redis.Redis.from_url(settings.REDIS_URL, db=db)
        for key in client.scan_iter(count=1000):
            found.append(key)
            kind = client.type(key)
            if kind == b"string":
                found.append(client.get(key) or b"")
            elif kind == b"list":
                found.extend(client.lrange(key, 0, -1))
            elif kind == b"hash":
                found.extend(b"%s=%s" % kv for kv in client.hgetall(key).items())
            elif kind in (b"set", b"zset"):
                found.extend(client.zrange(key, 0, -1) if kind == b"zset" else client.smembers(key))
    return b"\n".join(found)


@pytest.fixture
def traffic(live_server, alice, upstream, celery_worker, caplog):
    caplog.set_level(logging.DEBUG)
    secret = wire(alice, upstream)
    key = services.provider_key_save(user=alice, provider="mistral", api_key=KEY, base_url=f"{upstream.url}/v1")
    services.provider_key_check(key=key)
    url = live_server.url
    headers = {"Authorization": f"Bearer {secret}"}
    text = f"{PROMPT} ECHO:{ANSWER}"
    responses = []

    def post(path, body=None, raw=None, extra=None):
        data = raw if raw is not None else json.dumps(body)
        response = requests.post(
            url + path, data=data, headers={**headers, "Content-Type": "application/json", **(extra or {})}, timeout=30
        )
        responses.append(response.content)
        return response

    post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    post("/v1/chat/completions", {"model": "claude-sonnet-4-5", "stream": True, "messages": [{"role": "user", "content": text}]})
    post("/v1/chat/completions", {"model": "gemini-2.5-flash", "stream": True, "messages": [{"role": "user", "content": text}]})
    for _ in range(2):
        post(
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text + " cached"}]},
            extra={"x-aura-cache": "on"},
        )
        post(
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": text + " s"}]},
            extra={"x-aura-cache": "on"},
        )
    post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"FAIL_ECHO {PROMPT}"}]})
    post("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"FAIL_500 {PROMPT}"}]})
    post("/v1/chat/completions", {"model": "mistral-small-latest", "messages": [{"role": "user", "content": text}]})
    post("/v1/chat/completions", raw='{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + PROMPT)
    post("/v1/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": PROMPT}]})
    post("/v1/embeddings", {"model": "text-embedding-3-small", "input": [PROMPT, ANSWER]})
    return {"responses": responses, "user": alice}


def test_no_canary_in_error_responses(traffic):
    for body in traffic["responses"]:
        if b'"error"' in body and b"chat.completion" not in body:
            assert PROMPT.encode() not in body and KEY.encode() not in body


def test_no_canary_in_any_table(traffic):
    dump = table_dump()
    for canary in (PROMPT, ANSWER, KEY):
        assert canary not in dump


def test_no_canary_in_the_logs(traffic, caplog):
    text = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for canary in (PROMPT, ANSWER, KEY):
        assert canary not in text


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs a real Redis (REDIS_URL)")
def test_no_canary_in_redis_or_celery_messages(traffic):
    dump = redis_dump()
    assert dump  # the cache holds entries: the search is real
    for canary in (PROMPT, ANSWER, KEY):
        assert canary.encode() not in dump


def test_no_canary_in_the_export(traffic, client, celery_worker):
    import time

    user = traffic["user"]
    client.force_login(user)
    client.post("/settings/privacy/export/")
    deadline = time.time() + 30
    while DataExport.objects.get(user=user).status == "pending" and time.time() < deadline:
        time.sleep(0.1)
    export = DataExport.objects.get(user=user)
    archive = zipfile.ZipFile(BytesIO(b"".join(client.get(f"/settings/privacy/exports/{export.pk}/").streaming_content)))
    content = b"".join(archive.read(n) for n in archive.namelist())
    assert b"mistral" in content  # the export is real
    for canary in (PROMPT, ANSWER, KEY):
        assert canary.encode() not in content


def test_no_canary_in_the_admin(traffic, client):
    admin = User.objects.create_superuser("root@example.org", "admin password 123456", display_name="Root")
    client.force_login(admin)
    from django.contrib import admin as django_admin

    pages = ["/admin/"]
    for model in django_admin.site._registry:
        meta = model._meta
        pages.append(f"/admin/{meta.app_label}/{meta.model_name}/")
        first = model.objects.first()
        if first is not None:
            pages.append(f"/admin/{meta.app_label}/{meta.model_name}/{first.pk}/change/")
    for page in pages:
        body = client.get(page).content
        for canary in (PROMPT, ANSWER, KEY):
            assert canary.encode() not in body, page
