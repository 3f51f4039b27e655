"""The WSGI application gunicorn serves: /v1 behind the security middleware alone, the site behind all of it."""

import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from aura.handlers import Application


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
