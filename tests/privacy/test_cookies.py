"""Privacy policy §8: only strictly necessary cookies, the session cookie a JWT, no third-party scripts.

What localStorage holds (theme, language, the session tag) is shown in a real browser:
tests/e2e/test_browser_storage.py.
"""

import re

import jwt
from django.test import Client

from accounts.models import UserSession
from accounts.sessions import session_tag
from tests.conftest import PASSWORD


def log_in(client):
    return client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})


def test_only_session_and_csrf_cookies(client, alice):
    client.get("/login/")
    log_in(client)
    client.post("/language/", {"language": "en"})
    for path in ("/", "/dashboard/", "/settings/", "/keys/", "/providers/", "/pricing/", "/billing/", "/settings/privacy/"):
        client.get(path)
    assert set(client.cookies) <= {"sessionid", "csrftoken"}
    session = client.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"
    client.post("/logout/")
    client.post("/language/", {"language": "ru"})  # a visitor's choice stays in the browser
    client.get("/login/?lang=ru")
    assert set(client.cookies) <= {"sessionid", "csrftoken"}


def test_the_session_cookie_is_a_jwt_for_authentication_only(client, alice):
    token = log_in(client).cookies["sessionid"].value
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, options={"verify_signature": False})
    # It names the server-side session, and nothing about the person.
    assert set(claims) == {"sid", "iat", "exp", "iss", "aud"}
    assert claims["sid"] == UserSession.objects.get(user=alice).session_key


def test_pages_give_scripts_a_session_tag_that_opens_nothing(client, alice):
    token = log_in(client).cookies["sessionid"].value
    key = UserSession.objects.get(user=alice).session_key
    page = client.get("/dashboard/").content.decode()
    [tag] = re.findall(r'<meta name="aura-session" content="([0-9a-f]*)">', page)
    assert tag == session_tag(key) and len(tag) == 32
    assert tag not in (key, token) and tag not in token
    stranger = Client()
    stranger.cookies["sessionid"] = tag
    assert stranger.get("/dashboard/").status_code == 302


def test_a_signed_out_page_has_an_empty_session_tag(client, db):
    assert '<meta name="aura-session" content="">' in client.get("/").content.decode()


def test_signing_in_again_gives_a_new_session_tag(client, alice):
    tag = re.compile(r'<meta name="aura-session" content="([0-9a-f]+)">')
    log_in(client)
    first = tag.search(client.get("/dashboard/").content.decode()).group(1)
    client.post("/logout/")
    log_in(client)
    assert tag.search(client.get("/dashboard/").content.decode()).group(1) != first


def test_cookies_are_secure_in_production_settings():
    from aura import settings as module

    assert module.SESSION_COOKIE_SECURE == module.CSRF_COOKIE_SECURE
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
