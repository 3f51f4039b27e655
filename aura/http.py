import functools
import ipaddress

from django.conf import settings


@functools.lru_cache(maxsize=4096)
def normal_ip(value) -> str | None:
    """An IP address in its canonical form, or None for anything else (callers repeat: remembered)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request) -> str | None:
    """The caller's address. Behind a TLS-terminating proxy REMOTE_ADDR is the proxy, so trust
    X-Forwarded-For only then, and only its last entry: the address our proxy saw (a client can
    put anything before it). Whatever is not an IP address is no address."""
    address = request.META.get("REMOTE_ADDR")
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            address = forwarded.split(",")[-1].strip()
    return normal_ip(address) if address else None


def ratelimit_ip(request) -> str:
    """The address django-ratelimit counts a visitor by (RATELIMIT_IP_META_KEY): the client's, not the
    proxy's, or every visitor behind the proxy would share one allowance; REMOTE_ADDR when the
    forwarded value is not an address."""
    return client_ip(request) or normal_ip(request.META.get("REMOTE_ADDR")) or "0.0.0.0"  # noqa: S104 -- a count's key, not a bind
