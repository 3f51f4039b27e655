from django.conf import settings


def client_ip(request) -> str | None:
    """The caller's address. Behind a TLS-terminating proxy REMOTE_ADDR is the proxy, so trust X-Forwarded-For only then."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None
