"""Notices after a redirect use no cookie of their own: session messages when signed in, a fixed code in the address otherwise."""

import re

from django.core import mail

from accounts.models import UserSession
from accounts.services import email_verification_send
from tests.conftest import PASSWORD

ALLOWED = {"sessionid", "csrftoken"}


def test_a_signed_in_notice_lives_in_the_session_not_in_a_cookie(alice_client):
    response = alice_client.post("/keys/", {"name": "ci", "once": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}, follow=True)
    assert response.status_code == 200
    assert set(alice_client.cookies) <= ALLOWED
    response = alice_client.post("/settings/", {"display_name": "Alice B", "email": "alice@example.org", "language": "en"}, follow=True)
    assert "Your profile is saved." in response.content.decode()
    assert set(alice_client.cookies) <= ALLOWED and "messages" not in response.cookies


def test_a_visitor_gets_a_notice_in_the_address_and_no_session(client, db):
    response = client.post("/contact/", {"name": "Zoe", "email": "zoe@example.org", "subject": "Hi", "message": "Can I use Groq?"})
    assert response.status_code == 302 and response.url == "/contact/?notice=contact-sent"
    assert len(mail.outbox) == 1
    page = client.get(response.url)
    assert "Thank you! Your message is on its way to our support team." in page.content.decode()
    assert set(client.cookies) <= {"csrftoken"}  # no session was opened for the notice


def test_a_confirmation_link_opened_signed_out_names_no_address(client, alice):
    alice.email_verified = False
    alice.save()
    email_verification_send(user=alice, email=alice.email)
    path = re.search(r"http://[^/]+(/verify/\S+/)", mail.outbox[0].body).group(1)
    response = client.get(path, follow=True)
    body = response.content.decode()
    assert "Your email address is confirmed. Log in to continue." in body
    assert "alice@example.org" not in response.redirect_chain[-1][0]
    assert "sessionid" not in client.cookies


def test_a_confirmation_link_opened_signed_in_names_the_address(alice_client, alice):
    alice.email_verified = False
    alice.save()
    email_verification_send(user=alice, email=alice.email)
    path = re.search(r"http://[^/]+(/verify/\S+/)", mail.outbox[0].body).group(1)
    response = alice_client.get(path, follow=True)
    assert "Your email address alice@example.org is confirmed." in response.content.decode()


def test_an_unknown_notice_shows_nothing(client, db):
    body = client.get("/login/?notice=%3Cscript%3Ealert(1)%3C/script%3E").content.decode()
    assert "<script>alert(1)" not in body and 'class="messages"' not in body


def test_ending_this_browsers_own_session_logs_it_out(client, alice):
    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
    own = UserSession.objects.get(user=alice)
    response = client.post(f"/settings/sessions/{own.pk}/end/")
    assert response.status_code == 302 and response.url == "/login/?notice=session-ended"
    assert not UserSession.objects.filter(pk=own.pk).exists()
    assert client.get("/settings/").status_code == 302  # signed out
    assert "This session is ended." in client.get(response.url).content.decode()
