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
