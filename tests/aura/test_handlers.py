"""The WSGI application gunicorn serves: /v1 without Django's request cycle (the security middleware's
headers only), the site behind all of its middleware."""

import json
import logging
import os
import threading
import time
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from aura import cache, handlers
from aura.handlers import Application
from metrics.models import UsageRecord
from tests.conftest import free_port, web_server


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _Threaded(WSGIServer):
    daemon_threads = True


@pytest.fixture
def serve(transactional_db):
    """Start the application on loopback (after any settings the test changed: middleware reads them once)."""
    servers = []

    def start():
        server = make_server("127.0.0.1", 0, Application(), server_class=_Threaded, handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served(serve):
    return serve()


def test_v1_runs_without_the_site_middleware(served, alice_key, upstream):
    answer = requests.post(
        served + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {alice_key}"},
        timeout=20,
    )
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"  # the security middleware still runs
    assert "Content-Security-Policy" not in answer.headers and "Set-Cookie" not in answer.headers
    missing = requests.get(served + "/v1/nothing-here", timeout=20)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"


def test_the_site_keeps_its_middleware(served):
    page = requests.get(served + "/", timeout=20)
    assert page.status_code == 200
    assert "nonce-" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"


def test_v1_is_redirected_to_https_when_the_site_is(serve, settings):
    settings.SECURE_SSL_REDIRECT = True
    answer = requests.get(serve() + "/v1/models", allow_redirects=False, timeout=20)
    assert answer.status_code == 301 and answer.headers["Location"].startswith("https://")


def test_v1_gets_hsts_only_over_https(serve, settings, alice_key):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    url = serve() + "/v1/models"
    auth = {"Authorization": f"Bearer {alice_key}"}
    secure = requests.get(url, headers={**auth, "X-Forwarded-Proto": "https"}, timeout=20)
    assert secure.ok and secure.headers["Strict-Transport-Security"].startswith("max-age=3600")
    plain = requests.get(url, headers=auth, timeout=20)
    assert plain.ok and "Strict-Transport-Security" not in plain.headers


def test_an_error_outside_every_view_is_an_openai_shaped_500_that_logs_only_its_class(served, monkeypatch, caplog):
    def broken(path):
        raise RuntimeError("a message that could quote the request: sk-secret-0123")

    monkeypatch.setattr(handlers, "_route", broken)
    caplog.set_level(logging.DEBUG)
    answer = requests.get(served + "/v1/models", timeout=20)
    assert answer.status_code == 500 and answer.headers["Content-Type"] == "application/json"
    assert answer.json()["error"]["code"] == "internal_error" and "sk-secret" not in answer.text
    assert "RuntimeError" in caplog.text and "sk-secret" not in caplog.text


def test_a_response_that_cannot_be_sent_is_a_500_and_its_call_still_ends(served, monkeypatch, caplog, alice_key):
    from django.middleware.security import SecurityMiddleware

    from gateway import pipeline

    settled = []
    finish_after = pipeline.finish_after
    monkeypatch.setattr(pipeline, "finish_after", lambda ctx: (settled.append(ctx.request_id), finish_after(ctx)))

    def refuse(self, request, response):
        raise ValueError("a header the server would not send")

    monkeypatch.setattr(SecurityMiddleware, "process_response", refuse)
    caplog.set_level(logging.DEBUG)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    answer = requests.post(served + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {alice_key}"}, timeout=20)
    assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
    assert len(settled) == 1  # the call was settled all the same: its slot freed, its records handed over
    assert "ValueError" in caplog.text and "would not send" not in caplog.text
    assert until(lambda: cache.spinner.serving == 0)  # and it is no longer counted as served


def until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_call_is_counted_as_served_until_its_answer_ends_however_it_ends(served, alice_key, upstream):
    """A worker serving a single call spins for its Redis replies (aura.cache._Spinner): the count it
    goes by must come back down after every call, a stream the client left included."""
    auth = {"Authorization": f"Bearer {alice_key}"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert cache.spinner.serving == 0
    assert requests.post(served + "/v1/chat/completions", json=body, headers=auth, timeout=20).status_code == 200
    refused = requests.post(served + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"}, timeout=20)
    assert refused.status_code == 401
    assert requests.get(served + "/v1/models/no-such-model", headers=auth, timeout=20).status_code == 404
    streamed = requests.post(served + "/v1/chat/completions", json={**body, "stream": True}, headers=auth, timeout=20)
    assert b"[DONE]" in streamed.content
    assert until(lambda: cache.spinner.serving == 0)
    upstream.chunk_delay_ms = 100
    try:
        left = requests.post(served + "/v1/chat/completions", json={**body, "stream": True}, headers=auth, stream=True, timeout=20)
        next(left.iter_lines())
        assert cache.spinner.serving == 1  # under way
        left.close()  # the client goes away mid-stream
        assert until(lambda: cache.spinner.serving == 0)
    finally:
        upstream.chunk_delay_ms = 0


@pytest.mark.parametrize(
    "records",
    [
        {"AURA_USAGE_SPOOL": "false"},  # each call writes its record as it answers
        {"AURA_USAGE_SPOOL": "true", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},  # Redis down: written as the call settles
    ],
    ids=["written-when-answering", "written-when-settling"],
)
def test_each_call_hands_its_database_connection_back(transactional_db, alice_key, settings, records):
    """/v1 runs outside Django's request cycle, whose end hands a call's database connection back to the
    pool, and a call settles in a greenlet of its own. With a pool of one, a call (or a settling) that
    kept its connection would leave the next waiting for it, and its record unwritten."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the connection pool is PostgreSQL's")
    before = UsageRecord.objects.count()
    with web_server("--worker-class", "aura.gunicorn_worker.GeventWorker", "--workers", "1", DATABASE_POOL_SIZE="1", **records) as url:
        auth = {"Authorization": f"Bearer {alice_key}"}
        for stream in (False, True, False, True, False):  # each writes its usage record itself
            body = {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
            answer = requests.post(url + "/v1/chat/completions", json=body, headers=auth, timeout=5)
            assert answer.status_code == 200 and (b"[DONE]" in answer.content) == stream
    deadline = time.monotonic() + 10
    while UsageRecord.objects.count() < before + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert UsageRecord.objects.count() == before + 5


def test_a_chunked_request_body_is_read_and_one_over_the_limit_refused(transactional_db, alice_key, upstream):
    """Clients that do not know a body's length (Go's, Node's streams) send it chunked, without Content-Length."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    auth = {"Authorization": f"Bearer {alice_key}", "Content-Type": "application/json"}
    with web_server("--worker-class", "aura.gunicorn_worker.GeventWorker", "--workers", "1", AURA_MAX_BODY_BYTES="1048576") as url:
        answer = requests.post(url + "/v1/chat/completions", data=iter([body[:20], body[20:]]), headers=auth, timeout=10)
        assert answer.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in answer.request.headers
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
        pieces = iter([b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"', *[b"x" * 65536] * 17, b'"}]}'])
        refused = requests.post(url + "/v1/chat/completions", data=pieces, headers=auth, timeout=10)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_too_large"


def test_a_call_that_has_ended_frees_its_slot_for_the_next_on_its_connection(transactional_db, alice_key, upstream):
    """Under gevent a call settles after its answer has left, in a greenlet of its own (its Redis round
    trip off the connection's path), but before the connection's next call is admitted: one call in
    flight at a time is enough for calls made one after another."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("the slots are counted in Redis")
    config = str(Path(__file__).resolve().parents[1] / "gunicorn_one_call_at_a_time.py")
    with web_server("--worker-class", "aura.gunicorn_worker.GeventWorker", "--workers", "1", "--config", config) as url:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {alice_key}"
        statuses = []
        for stream in (False, True) * 8:
            body = {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
            statuses.append(session.post(url + "/v1/chat/completions", json=body, timeout=10).status_code)
        upstream.chunk_delay_ms = 150
        try:
            overlapping = session.post(url + "/v1/chat/completions", json={**body, "stream": True}, stream=True, timeout=10)
            next(overlapping.iter_lines())  # under way: its slot is taken
            other = requests.post(url + "/v1/chat/completions", json=body, headers=session.headers, timeout=10)
            overlapping.close()
        finally:
            upstream.chunk_delay_ms = 0
    assert statuses == [200] * 16
    assert other.status_code == 429 and other.json()["error"]["code"] == "concurrency_limit_exceeded"  # the limit holds
