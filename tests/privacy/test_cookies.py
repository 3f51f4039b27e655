"""Only strictly necessary cookies; no third-party scripts."""

import re

from tests.conftest import PASSWORD


def test_only_session_csrf_and_language_cookies(client, alice):
    client.get("/login/")
    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
    client.post("/language/", {"language": "en"})
    for path in ("/", "/dashboard/", "/settings/", "/keys/", "/providers/", "/pricing/", "/billing/", "/settings/privacy/"):
        client.get(path)
    assert set(client.cookies) <= {"sessionid", "csrftoken", "django_language"}
    session = client.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"


def test_cookies_are_secure_in_production_settings():
    from aura import settings as module

    assert module.SESSION_COOKIE_SECURE == module.CSRF_COOKIE_SECURE == module.LANGUAGE_COOKIE_SECURE
    assert module.SESSION_COOKIE_HTTPONLY is True and module.SESSION_COOKIE_SAMESITE == "Lax"


def test_no_page_loads_a_third_party_script_but_paddle_on_billing_pages(client, alice, settings):
    settings.PADDLE_CLIENT_TOKEN = "tok"
    client.force_login(alice)
    pages = [
        "/",
        "/privacy/",
        "/terms/",
        "/contact/",
        "/dashboard/",
        "/settings/",
        "/keys/",
        "/providers/",
        "/settings/privacy/",
        "/pricing/",
        "/billing/",
    ]
    for path in pages:
        body = client.get(path).content.decode()
        external = [src for src in re.findall(r'<script[^>]*src="([^"]+)"', body) if not src.startswith("/")]
        allowed = ["https://cdn.paddle.com/paddle/v2/paddle.js"] if path in ("/pricing/", "/billing/") else []
        assert external == allowed, path
        assert not re.findall(r'<(?:link|img|iframe)[^>]*(?:href|src)="https?://', body), path
