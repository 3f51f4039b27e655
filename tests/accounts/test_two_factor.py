import re
import time

import pyotp
from django.contrib.sessions.models import Session
from django.core import mail
from django.utils import timezone

from accounts import security
from accounts.models import LoginEvent, RecoveryCode, TwoFactor, UserSession
from tests.conftest import PASSWORD


def enable(client):
    page = client.get("/settings/2fa/").content.decode()
    secret = re.search(r"<code>([A-Z2-7]{32})</code>", page).group(1)
    response = client.post("/settings/2fa/", {"code": pyotp.TOTP(secret).now()})
    codes = re.findall(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>", response.content.decode())
    return secret, codes


def login(client, password=PASSWORD):
    return client.post("/login/", {"username": "alice@example.org", "password": password})


def test_enabling_needs_a_valid_code_and_shows_ten_codes_once(alice_client, alice):
    page = alice_client.get("/settings/2fa/")
    assert "<svg" in page.content.decode() and page["Cache-Control"] == "no-store"
    assert alice_client.post("/settings/2fa/", {"code": "000000"}).status_code == 200
    assert not TwoFactor.objects.exists()
    secret, codes = enable(alice_client)
    assert len(codes) == 10 and RecoveryCode.objects.filter(user=alice).count() == 10
    device = TwoFactor.objects.get(user=alice)
    assert secret.encode() not in bytes(device.sealed_secret)
    assert all(code not in str(list(RecoveryCode.objects.values())) for code in codes)


def test_login_then_needs_the_code(client, alice):
    secret, _codes = enable_for(alice)
    response = login(client)
    assert response.url == "/login/2fa/"
    assert client.get("/dashboard/").status_code == 302  # not logged in yet
    response = client.post("/login/2fa/", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302 and client.get("/dashboard/").status_code == 200


def test_a_code_works_once(client, alice):
    secret, _ = enable_for(alice)
    code = pyotp.TOTP(secret).now()
    login(client)
    client.post("/login/2fa/", {"code": code})
    other = client.__class__()
    login(other)
    response = other.post("/login/2fa/", {"code": code})
    assert "That code is not valid (or was already used)." in response.content.decode()


def test_only_one_step_either_side_is_accepted(alice):
    secret, _ = enable_for(alice)
    totp = pyotp.TOTP(secret)
    assert security._matching_step(secret, totp.at(time.time() - 30), time.time()) is not None
    assert security._matching_step(secret, totp.at(time.time() + 30), time.time()) is not None
    assert security._matching_step(secret, totp.at(time.time() - 90), time.time()) is None


def test_a_recovery_code_logs_in_once(client, alice):
    _secret, codes = enable_for(alice)
    login(client)
    assert client.post("/login/2fa/", {"code": codes[0]}).status_code == 302
    other = client.__class__()
    login(other)
    assert other.post("/login/2fa/", {"code": codes[0]}).status_code == 200


def test_disabling_needs_password_and_code(alice_client, alice):
    secret, _ = enable(alice_client)
    response = alice_client.post("/settings/2fa/disable/", {"password": "wrong", "code": pyotp.TOTP(secret).now()})
    assert response.status_code == 400 and TwoFactor.objects.exists()
    time.sleep(0)  # a fresh code step is not needed: the failed attempt did not consume it
    alice_client.post("/settings/2fa/disable/", {"password": PASSWORD, "code": pyotp.TOTP(secret).now()})
    assert not TwoFactor.objects.exists() and not RecoveryCode.objects.exists()


def test_recovery_codes_can_be_regenerated(alice_client, alice):
    secret, old = enable(alice_client)
    response = alice_client.post("/settings/2fa/recovery-codes/", {"password": PASSWORD, "code": pyotp.TOTP(secret).now()})
    new = re.findall(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>", response.content.decode())
    assert len(new) == 10 and not set(new) & set(old)
    assert not security.use_recovery_code(alice, old[0]) and security.use_recovery_code(alice, new[0])


def test_enabling_ends_other_sessions(client, alice):
    other = client.__class__()
    login(other)
    login(client)
    assert UserSession.objects.filter(user=alice).count() == 2
    enable(client)
    assert other.get("/dashboard/").status_code == 302
    assert client.get("/dashboard/").status_code == 200


def test_sessions_are_listed_and_can_be_ended(client, alice):
    other = client.__class__()
    login(other, PASSWORD)
    login(client)
    page = client.get("/settings/").content.decode()
    assert "this browser" in page and page.count("last seen") == 2
    theirs = UserSession.objects.exclude(session_key=client.session.session_key).get()
    client.post(f"/settings/sessions/{theirs.pk}/end/")
    assert other.get("/dashboard/").status_code == 302


def test_bob_cannot_end_alices_session(client, alice, bob):
    login(client)
    session = UserSession.objects.get(user=alice)
    bobs = client.__class__()
    bobs.force_login(bob)
    assert bobs.post(f"/settings/sessions/{session.pk}/end/").status_code == 404


def test_repeated_failures_lock_the_account_and_email_its_owner(client, alice):
    for _ in range(security.LOCK_AFTER):
        login(client, "wrong password")
    response = login(client)  # even the right password is refused while locked
    assert "this account is locked for 15 minutes" in response.content.decode()
    assert [m.subject for m in mail.outbox] == ["Your AURA account was locked after failed logins"]
    assert LoginEvent.objects.filter(user=alice, succeeded=False).count() == security.LOCK_AFTER


def test_deleting_the_account_needs_the_code_when_2fa_is_on(alice_client, alice):
    secret, _ = enable(alice_client)
    response = alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "code": "000000", "confirm": "on"})
    assert response.status_code == 400
    alice_client.post("/settings/privacy/delete/", {"password": PASSWORD, "code": pyotp.TOTP(secret).now(), "confirm": "on"})
    alice.refresh_from_db()
    assert alice.deletion_requested_at is not None


def enable_for(user):
    secret = security.new_secret()

    class Request:
        class session:  # noqa: N801 (a stand-in for request.session in a service call)
            session_key = None

    codes = security.two_factor_enable(user=user, secret=secret, request=Request)
    return secret, codes


def test_the_seed_being_enrolled_is_not_stored_in_plaintext(alice_client):
    from django.contrib.sessions.models import Session

    page = alice_client.get("/settings/2fa/").content.decode()
    secret = re.search(r"<code>([A-Z2-7]{32})</code>", page).group(1)
    assert secret in alice_client.get("/settings/2fa/").content.decode()  # the same enrolment on reload
    stored = "".join(str(s.get_decoded()) + s.session_data for s in Session.objects.all())
    assert secret not in stored


def test_a_browser_that_logged_out_or_expired_leaves_the_sessions_list(client, alice):
    other = client.__class__()
    login(other)
    login(client)
    assert client.get("/settings/").content.decode().count("last seen") == 2
    other.post("/logout/")
    assert UserSession.objects.filter(user=alice).count() == 1
    assert client.get("/settings/").content.decode().count("last seen") == 1
    third = client.__class__()
    login(third)
    Session.objects.filter(session_key=third.session.session_key).update(expire_date=timezone.now())
    assert client.get("/settings/").content.decode().count("last seen") == 1  # its row waits for purge-logs, unlisted


def test_turning_it_on_asks_only_for_the_apps_code(alice_client):
    page = alice_client.get("/settings/2fa/").content.decode()
    assert "Code from your authenticator app</label>" in page and "or a recovery code" not in page


def test_a_code_typed_in_another_scripts_digits_is_read_as_its_number(client, alice):
    secret, _ = enable_for(alice)
    login(client)
    assert "not valid" in client.post("/login/2fa/", {"code": "١٢٣٤٥x"}).content.decode()  # a form error, not a 500
    full_width = pyotp.TOTP(secret).now().translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    response = client.post("/login/2fa/", {"code": full_width})
    assert response.status_code == 302 and client.get("/dashboard/").status_code == 200


def test_turning_it_on_leaves_the_qr_code_in_view(alice_client):
    page = alice_client.get("/settings/2fa/").content.decode()
    assert "<svg" in page and "autofocus" not in page  # a focused field below it scrolled a phone past the QR code


def test_the_login_steps_focus_their_field(client, alice):
    enable_for(alice)
    assert re.search(r'<input[^>]*name="username"[^>]*autofocus', client.get("/login/").content.decode())
    login(client)
    assert re.search(r'<input[^>]*name="code"[^>]*autofocus', client.get("/login/2fa/").content.decode())
