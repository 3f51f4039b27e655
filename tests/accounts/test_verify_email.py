import re

from django.core import mail, signing

from accounts.models import User
from accounts.services import VERIFY_SALT, email_verification_send


def link_path(message):
    return re.search(r"http://[^/]+(/verify/\S+/)", message.body).group(1)


def test_the_link_confirms_the_address(client, alice):
    alice.email_verified = False
    alice.save()
    email_verification_send(user=alice, email=alice.email)
    response = client.get(link_path(mail.outbox[0]))
    assert response.status_code == 302 and response.url == "/login/?notice=email-confirmed"
    alice.refresh_from_db()
    assert alice.email_verified


def test_an_expired_link_says_so(client, alice, settings):
    settings.EMAIL_VERIFICATION_MAX_AGE = -1
    token = signing.dumps({"u": alice.pk, "e": alice.email}, salt=VERIFY_SALT, compress=True)
    response = client.get(f"/verify/{token}/")
    assert response.status_code == 400
    assert "This confirmation link has expired" in response.content.decode()


def test_a_forged_link_says_so(client, alice):
    token = signing.dumps({"u": alice.pk, "e": "mallory@example.org"}, salt="another-salt")
    response = client.get(f"/verify/{token}/")
    assert response.status_code == 400
    assert "This confirmation link is not valid" in response.content.decode()
    alice.refresh_from_db()
    assert alice.email == "alice@example.org"


def test_garbage_in_the_link_is_a_clear_400(client, db):
    response = client.get("/verify/not-a-token/")
    assert response.status_code == 400


def test_an_email_change_applies_only_when_confirmed(alice_client, alice):
    response = alice_client.post("/settings/", {"display_name": "Alice", "email": "alice@new.example.org", "language": "en"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice@example.org"
    [message] = mail.outbox
    assert message.to == ["alice@new.example.org"]
    assert message.subject == "Confirm your new email address for AURA"

    alice_client.get(link_path(message))
    alice.refresh_from_db()
    assert alice.email == "alice@new.example.org"
    assert mail.outbox[1].to == ["alice@example.org"]
    assert "alice@new.example.org" in mail.outbox[1].body


def test_a_change_to_an_address_taken_meanwhile_fails(client, alice, bob):
    email_verification_send(user=alice, email="shared@example.org")
    User.objects.filter(pk=bob.pk).update(email="shared@example.org")
    response = client.get(link_path(mail.outbox[0]))
    assert response.status_code == 400
    assert "Another account has confirmed this address" in response.content.decode()


def test_a_logged_in_user_can_ask_for_a_new_link(client, db):
    client.post("/signup/", {"display_name": "Eve", "email": "eve@example.org", "password": "correct horse battery staple"})
    response = client.post("/verify-resend/")
    assert response.status_code == 302
    assert len(mail.outbox) == 2


def test_an_old_link_cannot_take_the_address_back_and_a_replaced_change_is_void(alice_client, client, alice):
    """Links are bound to the account as it was when they were sent: once the address moved, a
    sign-up link (or any older one) no longer applies, and only the latest change can be confirmed."""
    alice.email_verified = False
    alice.save()
    email_verification_send(user=alice, email=alice.email)
    signup_link = link_path(mail.outbox[-1])
    client.get(signup_link)
    change = {"display_name": "Alice", "language": "en"}
    alice_client.post("/settings/", {**change, "email": "alice@typo.example.org"})
    mistyped = link_path(mail.outbox[-1])
    alice_client.post("/settings/", {**change, "email": "alice@new.example.org"})
    latest = link_path(mail.outbox[-1])
    assert client.get(mistyped).status_code == 400  # replaced by the later request
    assert client.get(latest).status_code == 302
    alice.refresh_from_db()
    assert alice.email == "alice@new.example.org"
    for stale in (signup_link, mistyped):  # whoever still reads an older inbox
        assert client.get(stale).status_code == 400
        alice.refresh_from_db()
        assert alice.email == "alice@new.example.org"
    assert client.get(latest).status_code == 302  # used again: already done, nothing changes
    alice.refresh_from_db()
    assert alice.email == "alice@new.example.org" and alice.email_verified


def test_a_pending_change_is_void_once_the_password_changed(alice_client, client, alice):
    alice_client.post("/settings/", {"display_name": "Alice", "language": "en", "email": "alice@new.example.org"})
    link = link_path(mail.outbox[-1])
    alice.set_password("an entirely new passphrase 42")
    alice.save()
    assert client.get(link).status_code == 400
    alice.refresh_from_db()
    assert alice.email == "alice@example.org"


def test_a_link_of_another_account_opened_while_signed_in_says_whose_it_is(client, alice, bob):
    alice.email_verified = False
    alice.save()
    email_verification_send(user=alice, email=alice.email)
    client.force_login(bob)
    page = client.get(link_path(mail.outbox[-1]), follow=True).content.decode()
    assert "Адрес alice@example.org другого аккаунта AURA подтверждён." in page  # in bob's language
    assert "Адрес электронной почты alice@example.org подтверждён." not in page  # not "your address"
    alice.refresh_from_db()
    assert alice.email_verified
