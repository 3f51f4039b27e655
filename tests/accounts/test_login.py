from accounts.models import LoginEvent
from tests.conftest import CHROME_UA, PASSWORD


def test_it_logs_in_with_the_email_in_any_case(client, alice):
    response = client.post("/login/", {"username": "ALICE@Example.org", "password": PASSWORD})
    assert response.status_code == 302 and response.url == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_a_wrong_password_is_a_form_error(client, alice):
    response = client.post("/login/", {"username": "alice@example.org", "password": "nope"})
    assert response.status_code == 200
    assert "That email and password do not match an account." in response.content.decode()


def test_it_records_successful_and_failed_logins(client, alice):
    client.post("/login/", {"username": "alice@example.org", "password": "wrong"}, HTTP_USER_AGENT=CHROME_UA, REMOTE_ADDR="203.0.113.7")
    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD}, HTTP_USER_AGENT=CHROME_UA, REMOTE_ADDR="203.0.113.7")
    success, failure = LoginEvent.objects.filter(user=alice).order_by("-succeeded")
    assert success.succeeded and not failure.succeeded
    assert success.ip == "203.0.113.7"
    assert success.browser.startswith("Chrome 131")
    assert success.os == "Windows 10"


def test_it_keeps_nothing_about_unknown_addresses(client, db):
    client.post("/login/", {"username": "nobody@example.org", "password": "wrong"})
    assert not LoginEvent.objects.exists()


def test_the_history_is_on_the_settings_page(client, alice):
    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD}, HTTP_USER_AGENT=CHROME_UA)
    body = client.get("/settings/").content.decode()
    assert "Chrome 131" in body and "Windows 10" in body


def test_logout_ends_the_session(alice_client):
    response = alice_client.post("/logout/")
    assert response.status_code == 302
    assert alice_client.get("/dashboard/").status_code == 302


def test_the_cabinet_requires_login(client, db):
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response.url == "/login/?next=/dashboard/"
