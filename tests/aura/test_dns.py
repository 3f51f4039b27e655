"""The gevent workers' resolver: IP addresses answered at once, host names looked up in gevent's threads."""

import socket

import pytest

from aura import dns


class Threads:
    """Stands in for gevent's thread pool: records what would have been sent to a thread."""

    def __init__(self):
        self.sent = []

    def apply(self, function, args, kwargs=None):
        self.sent.append(args[0])
        return function(*args, **(kwargs or {}))


@pytest.fixture
def resolver():
    made = dns.Resolver()
    made.pool = Threads()
    return made


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", b"127.0.0.1", "10.1.2.3"])
def test_an_ip_address_is_answered_without_a_lookup(resolver, host):
    found = resolver.getaddrinfo(host, 6379, 0, socket.SOCK_STREAM)
    assert found == socket.getaddrinfo(host, 6379, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    assert resolver.pool.sent == []


def test_a_host_name_is_looked_up_in_a_thread(resolver):
    found = resolver.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
    assert resolver.pool.sent == ["localhost"]
    assert found and all(entry[4][0] == "127.0.0.1" for entry in found)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1.example", "1.2.3", "", None, "::1::"])
def test_anything_else_is_not_taken_for_an_address(host):
    assert not dns._literal(host)


def test_install_replaces_gevents_default_resolver():
    from gevent import get_hub
    from gevent.resolver.thread import Resolver as ThreadResolver

    hub = get_hub()
    hub.resolver = ThreadResolver(hub)
    dns.install()
    assert type(hub.resolver) is dns.Resolver
