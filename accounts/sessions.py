"""The session cookie is a JWT that names a server-side session.

The token carries no identity, only Django's session key (``sid``): the session row is what
logs a browser in, so ending a session on the server (Settings, a password change, enabling
2FA) ends its token at once. The signature means a cookie the server did not issue is never
looked up in the session store at all.
"""

import time

import jwt
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.utils.crypto import salted_hmac
from django.utils.http import parse_http_date

ALGORITHM = "HS256"
ISSUER = AUDIENCE = "aura"
CLAIMS = ["sid", "iat", "exp", "iss", "aud"]
# Web nodes' clocks may differ by a little: a token issued by one must not look early to another.
CLOCK_SKEW_SECONDS = 10


def _signing_keys() -> list[bytes]:
    """HS256 keys derived from SECRET_KEY (then its fallbacks, so rotating it logs nobody out)."""
    secrets = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [salted_hmac("accounts.sessions.jwt", "signing key", secret=secret, algorithm="sha256").digest() for secret in secrets]


def session_token(session_key: str, *, expires_at: int, issued_at: int | None = None) -> str:
    """The cookie value for ``session_key``: a JWT that expires when the cookie does."""
    issued_at = int(time.time()) if issued_at is None else issued_at
    claims = {"sid": session_key, "iat": issued_at, "exp": expires_at, "iss": ISSUER, "aud": AUDIENCE}
    return jwt.encode(claims, _signing_keys()[0], algorithm=ALGORITHM)


def session_key_from_token(token: str | None) -> str | None:
    """The session key a valid token names; None for anything forged, expired or malformed."""
    if not token:
        return None
    for key in _signing_keys():
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                audience=AUDIENCE,
                options={"require": CLAIMS},
                leeway=CLOCK_SKEW_SECONDS,
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            return None
        return claims["sid"] if isinstance(claims["sid"], str) else None
    return None


def session_tag(session_key: str) -> str:
    """A public name for a session, for the browser's tabs to compare: it opens nothing."""
    return salted_hmac("accounts.sessions.tag", session_key, algorithm="sha256").hexdigest()[:32]


class JWTSessionMiddleware(SessionMiddleware):
    """Django's session middleware, with the session key carried inside a signed JWT."""

    def process_request(self, request):
        token = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        request.session = self.SessionStore(session_key_from_token(token))

    def process_response(self, request, response):
        response = super().process_response(request, response)
        morsel = response.cookies.get(settings.SESSION_COOKIE_NAME)
        if morsel is not None and morsel.value:  # Django set the session key (an empty value deletes the cookie)
            issued_at = None
            if morsel["expires"]:
                expires_at = parse_http_date(morsel["expires"])
                if morsel["max-age"]:  # issued when the cookie was set, not a clock tick later
                    issued_at = expires_at - int(morsel["max-age"])
            else:  # a browser-session cookie: the token lasts as long as the session row
                expires_at = int(request.session.get_expiry_date().timestamp())
            token = session_token(morsel.value, expires_at=expires_at, issued_at=issued_at)
            morsel.set(morsel.key, token, token)
        return response
