import re

from django.core import mail

from tests.conftest import PASSWORD


def test_it_renames_the_user(alice_client, alice):
    response = alice_client.post("/settings/", {"display_name": "Alice B.", "email": "alice@example.org", "language": "en"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.display_name == "Alice B."
    assert mail.outbox == []


def test_it_refuses_an_email_of_another_account(alice_client, bob):
    response = alice_client.post("/settings/", {"display_name": "Alice", "email": "BOB@example.org", "language": "en"})
    assert response.status_code == 200
    assert "Another account already uses this email." in response.content.decode()
    assert mail.outbox == []


def test_it_refuses_an_empty_name(alice_client):
    response = alice_client.post("/settings/", {"display_name": "", "email": "alice@example.org", "language": "en"})
    assert "This field is required." in response.content.decode()


def test_the_password_changes_and_the_session_survives(alice_client, alice):
    new = "another long passphrase here"
    response = alice_client.post("/settings/password/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new)
    assert alice_client.get("/settings/").status_code == 200


def test_a_wrong_old_password_is_a_form_error(alice_client, alice):
    response = alice_client.post("/settings/password/", {"old_password": "nope", "new_password1": "x" * 12, "new_password2": "x" * 12})
    assert response.status_code == 200
    assert "Your old password was entered incorrectly." in response.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_the_settings_page_focuses_no_field(alice_client):
    page = alice_client.get("/settings/").content.decode()
    assert 'name="old_password"' in page and "autofocus" not in page  # focusing it scrolled a phone half a page down


def test_the_sessions_last_seen_says_it_is_utc(client, alice):
    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
    page = client.get("/settings/").content.decode()
    assert re.search(r'last seen <time datetime="\d{4}-\d\d-\d\dT[\d:.]+\+00:00">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', page)
