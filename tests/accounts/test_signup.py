from django.core import mail

from accounts.models import User
from tests.conftest import PASSWORD


def signup(client, **overrides):
    data = {"display_name": "Dana", "email": "Dana@Example.org", "password": PASSWORD, **overrides}
    return client.post("/signup/", data)


def test_it_creates_an_unverified_user_and_logs_in(client, db):
    response = signup(client)
    assert response.status_code == 302 and response.url == "/dashboard/"
    user = User.objects.get()
    assert user.email == "dana@example.org"
    assert user.display_name == "Dana"
    assert not user.email_verified
    assert user.password.startswith("bcrypt_sha256$")
    assert client.get("/dashboard/").status_code == 200


def test_it_sends_a_verification_link(client, db):
    signup(client)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["dana@example.org"]
    assert message.subject == "Confirm your email address for AURA"
    assert "/verify/" in message.body
    assert "/verify/" in message.alternatives[0][0]
    assert '<html lang="en">' in message.alternatives[0][0]


def test_the_email_is_in_the_language_of_the_page(client, db):
    data = {"display_name": "Dana", "email": "Dana@Example.org", "password": PASSWORD}
    client.post("/signup/?lang=ru", data)  # the form posts to its page's address, which carries the visitor's language
    assert User.objects.get().language == "ru"
    assert mail.outbox[0].subject == "Подтвердите адрес электронной почты для AURA"
    assert '<html lang="ru">' in mail.outbox[0].alternatives[0][0]  # a mail reader picks its voice and hyphenation by it


def test_it_rejects_a_duplicate_email_whatever_its_case(client, alice):
    response = signup(client, email="ALICE@example.org")
    assert response.status_code == 200
    assert "An account with this email already exists" in response.content.decode()
    assert User.objects.count() == 1


def test_it_rejects_a_weak_password(client, db):
    response = signup(client, password="password1")
    assert response.status_code == 200
    assert "This password is too common." in response.content.decode()
    assert not User.objects.exists()


def test_it_rejects_a_password_like_the_email(client, db):
    response = signup(client, email="verylongname@example.org", password="verylongname")
    assert "too similar" in response.content.decode()


def test_it_shows_errors_for_missing_fields(client, db):
    response = client.post("/signup/", {})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count("This field is required.") == 3


def test_it_rejects_a_malformed_email(client, db):
    response = signup(client, email="not-an-email")
    assert "Enter a valid email address." in response.content.decode()


def test_it_rejects_a_password_like_the_display_name(client, db):
    response = signup(client, display_name="Maximilian Oberhauser", password="maximilianoberhauser")
    assert "The password is too similar to the display name." in response.content.decode()
    assert not User.objects.exists()


def test_bidirectional_controls_are_taken_out_of_a_name(client, alice):
    """A right-to-left override in a name would reverse the text shown after it, wherever it is greeted."""
    visitor = client.__class__()
    signup(visitor, display_name="\u202eevE\u202c Doe\u2067")
    assert User.objects.get(email="dana@example.org").display_name == "evE Doe"
    assert "This field is required." in signup(client.__class__(), display_name="\u202e\u202c", email="x@example.org").content.decode()
    client.force_login(alice)
    client.post("/settings/", {"display_name": "Ali\u202ece", "email": "alice@example.org", "language": "en"})
    assert User.objects.get(email="alice@example.org").display_name == "Alice"
