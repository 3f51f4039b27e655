import re

from django.core import mail

from tests.conftest import PASSWORD


def test_a_known_address_gets_a_link_that_works(client, alice):
    response = client.post("/reset/", {"email": "Alice@example.org"})
    assert response.status_code == 302 and response.url == "/reset/sent/"
    [message] = mail.outbox
    assert message.subject == "Reset your AURA password"
    path = re.search(r"http://[^/]+(/reset/\S+/\S+/)", message.body).group(1)
    form_page = client.get(path, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    new = "a brand new long passphrase"
    response = client.post(form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert response.status_code == 302 and response.url == "/reset/done/"
    assert client.login(username="alice@example.org", password=new)


def test_an_unknown_address_looks_the_same_and_sends_nothing(client, alice):
    response = client.post("/reset/", {"email": "nobody@example.org"})
    assert response.status_code == 302 and response.url == "/reset/sent/"
    assert mail.outbox == []


def test_an_unknown_token_explains_itself(client, alice):
    response = client.get("/reset/MQ/bad-token/", follow=True)
    assert response.status_code == 200
    assert "The password reset link is invalid, expired or already used." in response.content.decode()


def test_the_reset_email_is_in_the_users_language(client, bob):
    client.post("/reset/", {"email": "bob@example.org"})
    assert mail.outbox[0].subject == "Сброс пароля AURA"


def test_a_weak_new_password_is_refused(client, alice):
    client.post("/reset/", {"email": "alice@example.org"})
    path = re.search(r"http://[^/]+(/reset/\S+/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(path, follow=True)
    response = client.post(form_page.redirect_chain[-1][0], {"new_password1": "12345678", "new_password2": "12345678"})
    assert response.status_code == 200
    assert "This password is too common." in response.content.decode()
    assert client.login(username="alice@example.org", password=PASSWORD)
