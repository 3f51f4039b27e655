"""The caller's address, as login history, sessions and usage records keep it."""

from django.test import RequestFactory

from aura.http import client_ip


def request(**meta):
    return RequestFactory().get("/", REMOTE_ADDR=meta.pop("remote", "10.0.0.9"), **meta)


def test_without_a_proxy_the_peer_is_the_caller(settings):
    settings.SECURE_PROXY_SSL_HEADER = None
    assert client_ip(request(HTTP_X_FORWARDED_FOR="203.0.113.7")) == "10.0.0.9"


def test_behind_the_proxy_only_the_entry_it_added_counts(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # A client can send any X-Forwarded-For; the proxy appends the address it saw.
    assert client_ip(request(HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")) == "203.0.113.7"
    assert client_ip(request(HTTP_X_FORWARDED_FOR="2001:db8::1")) == "2001:db8::1"
    assert client_ip(request()) == "10.0.0.9"


def test_what_is_not_an_address_is_no_address(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client_ip(request(HTTP_X_FORWARDED_FOR="1.2.3.4, not-an-ip")) is None
    assert client_ip(request(remote="")) is None


def test_behind_the_proxy_each_visitor_has_an_allowance_of_their_own(client, settings, alice):
    """Login allows 20 tries a minute per address: the visitor's, not the proxy's they all come through."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    def try_login(visitor: str) -> int:
        form = {"username": "alice@example.com", "password": "wrong password"}
        proxied = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": visitor, "HTTP_X_FORWARDED_PROTO": "https"}
        return client.post("/login/", form, **proxied).status_code

    assert [try_login(f"203.0.113.{n}") for n in range(25)] == [200] * 25
    assert [try_login("198.51.100.7") for _ in range(21)][-1] == 429  # the one who keeps trying is stopped
    assert try_login("not-an-ip") == 200  # counted by the proxy's address then, not a 500
