import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.cache import cache
from openai import OpenAI

from accounts.services import user_create
from aura import cache as shared_cache
from gateway import limits, routing, services
from gateway.mock_provider import MockProvider

PASSWORD = "correct horse battery staple"
CHROME_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


@pytest.fixture(scope="session", autouse=True)
def _test_client_speaks_jwt_sessions():
    """Django's test client keeps the raw session key in the session cookie; AURA's cookie is a JWT.

    ``client.login()`` / ``force_login()`` get a cookie as the middleware would issue it, and
    ``client.session`` reads the key out of the token, so tests use both as with plain Django.
    The middleware itself never accepts a raw key.
    """
    from importlib import import_module

    from django.conf import settings
    from django.test.client import ClientMixin

    from accounts.sessions import session_key_from_token, session_token

    def store():
        return import_module(settings.SESSION_ENGINE).SessionStore

    def wrap(client, session):
        morsel = client.cookies[settings.SESSION_COOKIE_NAME]
        token = session_token(session.session_key, expires_at=int(session.get_expiry_date().timestamp()))
        morsel.set(morsel.key, token, token)

    def set_login_cookies(client, request):
        set_raw_cookie(client, request)
        wrap(client, request.session)

    def session(client):
        cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
        if cookie:
            return store()(session_key_from_token(cookie.value))
        new = store()()
        new.save()
        client.cookies[settings.SESSION_COOKIE_NAME] = new.session_key
        wrap(client, new)
        return new

    set_raw_cookie = ClientMixin._set_login_cookies
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClientMixin, "_set_login_cookies", set_login_cookies)
        patch.setattr(ClientMixin, "session", property(session))
        yield


@pytest.fixture(autouse=True)
def _clean_cache():
    # Rate-limit counters and cached lookups must not leak between tests.
    shared_cache.reset()
    cache.clear()
    limits.local_reset()
    routing.health_reset()
    services.api_keys_known_reset()
    yield
    cache.clear()


def make_user(email, name, **extra):
    return user_create(email=email, password=PASSWORD, display_name=name, verified=True, **extra)


def subscribe(user, plan="team", status="active", **fields):
    """Put ``user`` on a paid plan, as an applied Paddle webhook would."""
    from django.utils import timezone

    from billing.models import Subscription
    from billing.selectors import forget_plan

    subscription, _ = Subscription.objects.update_or_create(
        user=user,
        defaults={
            "paddle_subscription_id": f"sub_{user.pk:026d}",
            "paddle_customer_id": f"ctm_{user.pk:026d}",
            "status": status,
            "plan": plan,
            "state_at": timezone.now(),
            **fields,
        },
    )
    forget_plan(user.pk)
    return subscription


@pytest.fixture
def alice(db):
    return make_user("alice@example.org", "Alice")


@pytest.fixture
def bob(db):
    return make_user("bob@example.org", "Bob", language="ru")


@pytest.fixture
def charlie(db):
    return make_user("charlie@example.org", "Charlie")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process on the test database, when a broker is configured.

    Without Redis (the embedded default) tasks run eagerly in-process instead, and this
    fixture starts nothing. Tests that use it need ``transactional_db``: the worker only
    sees committed rows.
    """
    import os
    import subprocess
    import sys
    import time

    from django.conf import settings

    from aura.celery import app

    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield None
        return
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "AURA_ENV_FILE": "/nonexistent/.env",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "aura",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "--queues",
            "default,billing,metrics",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        env=env,
    )
    try:
        deadline = time.time() + 60
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.time() > deadline:
                raise RuntimeError("the Celery worker did not start")
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=30)


# The mock provider and a wired account: used by gateway, billing and metrics tests.


@pytest.fixture(scope="session")
def mock():
    provider = MockProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def upstream(mock):
    mock.reset()
    return mock


@contextlib.contextmanager
def fixed_upstream(content_type: str, payload: bytes):
    """An OpenAI-compatible server on loopback that answers every POST with ``payload``: its /v1 base URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 -- http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()


def wire(user, mock, providers=("openai", "anthropic", "gemini")):
    """Store provider keys for ``user`` pointing at the mock provider, and issue an AURA key."""
    bases = {"openai": f"{mock.url}/v1", "anthropic": mock.url, "gemini": mock.url, "mistral": f"{mock.url}/v1", "custom": f"{mock.url}/v1"}
    for provider in providers:
        services.provider_key_save(
            user=user,
            provider=provider,
            api_key=f"sk-{provider}-secret-0123456789",
            base_url=bases[provider],
            label="local" if provider == "custom" else "",
        )
    _key, secret = services.api_key_issue(user=user, name="tests")
    return secret


@pytest.fixture
def alice_key(alice, upstream):
    return wire(alice, upstream)


@pytest.fixture(scope="session")
def live_server(request):
    """pytest-django's live server, serving what gunicorn serves: ``aura.wsgi``'s application.

    Its own fixture serves Django's bare handler, so the /v1 tests would miss the path production
    takes (``aura.handlers.ApiHandler``, which skips Django's request cycle). Static files go
    through the site's WhiteNoise middleware, as in production.
    """
    from pytest_django.live_server_helper import LiveServer

    from aura.handlers import Application

    address = request.config.getvalue("liveserver") or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    server = LiveServer(address, start=False)
    server.thread.static_handler = lambda _django_handler: Application()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sdk(live_server, alice_key):
    return OpenAI(base_url=f"{live_server.url}/v1", api_key=alice_key, max_retries=0, timeout=20)


def free_port() -> int:
    """A port nothing listens on now (two suites at once on one machine must not share fixed ones)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def web_server(*args: str, **env_extra: str):
    """AURA under gunicorn (extra command-line ``args``) on a free loopback port, on the test
    database and the environment's Redis; yields its URL once it answers. Needs ``transactional_db``."""
    with web_process(*args, **env_extra) as (url, _process):
        yield url


@contextlib.contextmanager
def web_process(*args: str, **env_extra: str):
    """``web_server``, yielding (URL, gunicorn's master process) for a test that signals it."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "AURA_ENV_FILE": "/nonexistent/.env",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        **env_extra,
    }
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "aura.wsgi", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    command += ["--no-control-socket", *args]  # (two suites at once would share ~/.gunicorn/gunicorn.ctl)
    server = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                requests.get(url + "/v1/models", timeout=5)
                break
            except requests.RequestException:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=60)
