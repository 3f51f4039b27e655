"""The session cookie: an HS256 JWT naming a server-side session, refused in any other shape."""

import base64
import json
import time
import warnings

import jwt
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.crypto import salted_hmac
from django.utils.http import parse_http_date
from jwt.warnings import InsecureKeyLengthWarning

from accounts.models import UserSession
from accounts.sessions import session_key_from_token, session_token
from tests.conftest import PASSWORD


def login(client, password=PASSWORD):
    return client.post("/login/", {"username": "alice@example.org", "password": password})


def signing_key():
    return salted_hmac("accounts.sessions.jwt", "signing key", algorithm="sha256").digest()


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_for(key, **changes):
    now = int(time.time())
    return {"sid": key, "iat": now, "exp": now + 3600, "iss": "aura", "aud": "aura", **changes}


def browser_with(token):
    browser = Client()
    browser.cookies["sessionid"] = token
    return browser


def test_the_cookie_is_an_hs256_jwt_naming_the_session(client, alice):
    cookie = login(client).cookies["sessionid"]
    header, _payload, _signature = cookie.value.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(cookie.value, signing_key(), algorithms=["HS256"], audience="aura", issuer="aura")
    assert set(claims) == {"sid", "iat", "exp", "iss", "aud"}
    assert claims["sid"] == UserSession.objects.get(user=alice).session_key
    assert claims["exp"] == parse_http_date(cookie["expires"])
    assert claims["exp"] - claims["iat"] == settings.SESSION_COOKIE_AGE == cookie["max-age"]


def test_the_signing_key_is_derived_not_the_secret_key_itself(client, alice):
    token = login(client).cookies["sessionid"].value
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, settings.SECRET_KEY, algorithms=["HS256"], audience="aura", issuer="aura")


def test_the_cookie_is_httponly_lax_and_secure_when_configured(client, alice, settings):
    settings.SESSION_COOKIE_SECURE = True
    cookie = login(client).cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["secure"]


def test_the_cookie_it_issues_logs_a_browser_in(client, alice):
    token = login(client).cookies["sessionid"].value
    assert browser_with(token).get("/dashboard/").status_code == 200


def _tampered(token):
    head, payload, signature = token.split(".")
    flipped = "A" if signature[10] != "A" else "B"
    return f"{head}.{payload}.{signature[:10]}{flipped}{signature[11:]}"


def _hs512(key):
    with warnings.catch_warnings():  # PyJWT wants a longer key for HS512; the point is the same key
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims_for(key), signing_key(), algorithm="HS512")


FORGERIES = {
    "tampered signature": lambda key: _tampered(session_token(key, expires_at=int(time.time()) + 3600)),
    "alg none": lambda key: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims_for(key))}.",
    "HS512 with the right key": _hs512,
    "signed with SECRET_KEY": lambda key: jwt.encode(claims_for(key), settings.SECRET_KEY, algorithm="HS256"),
    "expired": lambda key: session_token(key, expires_at=int(time.time()) - 60),
    "another issuer": lambda key: jwt.encode(claims_for(key, iss="elsewhere"), signing_key(), algorithm="HS256"),
    "no sid": lambda key: jwt.encode(claims_for(key, sid=None), signing_key(), algorithm="HS256"),
    "the raw session key": lambda key: key,
    "garbage": lambda key: "not.a.jwt",
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_any_other_cookie_is_an_anonymous_visit_that_never_reads_the_session_store(client, alice, forge):
    login(client)
    key = UserSession.objects.get(user=alice).session_key
    browser = browser_with(forge(key))
    with CaptureQueriesContext(connection) as queries:
        response = browser.get("/dashboard/")
    assert response.status_code == 302 and response.url == "/login/?next=/dashboard/"
    assert response.cookies["sessionid"].value == ""  # the bad cookie is cleared
    assert not [q for q in queries if "django_session" in q["sql"]]


def test_ending_a_session_from_settings_makes_its_token_useless_at_once(client, alice):
    other = Client()
    theirs = login(other).cookies["sessionid"].value
    login(client)
    session = UserSession.objects.get(session_key=session_key_from_token(theirs))
    client.post(f"/settings/sessions/{session.pk}/end/")
    assert session_key_from_token(theirs) == session.session_key  # still well signed…
    assert browser_with(theirs).get("/dashboard/").status_code == 302  # …but names a session that is gone


def test_changing_the_password_ends_the_other_browsers_tokens(client, alice):
    theirs = login(Client()).cookies["sessionid"].value
    login(client)
    new = "another long passphrase here"
    client.post("/settings/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert browser_with(theirs).get("/dashboard/").status_code == 302
    assert client.get("/dashboard/").status_code == 200


def test_a_token_from_before_a_secret_key_rotation_still_works(client, alice, settings):
    token = login(client).cookies["sessionid"].value
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-that-is-long-enough-0123456789-abcdefghij"
    assert browser_with(token).get("/dashboard/").status_code == 200


def test_after_a_password_change_this_browser_is_still_listed_and_the_others_are_gone(client, alice):
    from accounts.models import UserSession

    login(Client())
    login(client)
    assert UserSession.objects.filter(user=alice).count() == 2
    new = "another long passphrase here"
    client.post("/settings/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    (mine,) = UserSession.objects.filter(user=alice)  # the other browser's row went with its session
    assert mine.session_key == client.session.session_key  # tracked under the new key, still revocable
    page = client.get("/settings/").content.decode()
    assert "this browser" in page  # Settings still marks it as this browser
