"""Name lookups in the gevent web workers: an address written as an IP is not looked up.

gevent's default resolver runs every ``getaddrinfo`` in a pool of native threads, so each new
connection (to Redis, to a provider) handed its lookup to a thread and took the answer back, and
the threads then contended with the worker for the GIL. In a burst of a thousand streams, which
opens a connection to the provider for each, that was the largest single cost left in the
workers (bench/gateway.py under py-spy). An IP literal needs no lookup: ``getaddrinfo`` with
AI_NUMERICHOST answers it at once, without I/O. Host names still go to the threads.
"""

import _socket
import functools

from gevent.resolver.thread import Resolver as ThreadResolver


@functools.lru_cache(maxsize=256)
def _literal(host) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (an IPv6 zone, "%eth0", allowed)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    address = host.split("%", 1)[0]
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, address)
            return True
        except (OSError, ValueError):
            continue
    return False


class Resolver(ThreadResolver):
    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 -- the socket API's names
        if _literal(host):
            return _socket.getaddrinfo(host, port, family, type, proto, flags | _socket.AI_NUMERICHOST)
        return super().getaddrinfo(host, port, family, type, proto, flags)


def install() -> None:
    """Use this resolver in this thread's gevent hub (when it has gevent's default one)."""
    from gevent import get_hub

    hub = get_hub()
    if type(hub.resolver) is ThreadResolver:
        hub.resolver = Resolver(hub)
