"""Paddle webhook signatures: ``Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]``.

h1 is HMAC-SHA256 with the endpoint secret over ``"<ts>:<raw body>"``. Any h1 may
match (Paddle sends several while a secret rotates); ``ts`` must be recent.
"""

import hashlib
import hmac
import time


class SignatureError(Exception):
    """Why a notification was refused (safe to log: never contains the body)."""


def parse(header: str) -> tuple[int, list[str]]:
    timestamp, signatures = None, []
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "ts" and value.isdigit():
            timestamp = int(value)
        elif name == "h1" and value:
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise SignatureError("malformed signature header")
    return timestamp, signatures


def sign(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}:".encode() + body, hashlib.sha256).hexdigest()


def verify(header: str | None, body: bytes, secrets: list[str], *, tolerance: int, now: float | None = None) -> None:
    if not header:
        raise SignatureError("missing Paddle-Signature header")
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    timestamp, signatures = parse(header)
    if abs((now or time.time()) - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    expected = [sign(body, secret, timestamp) for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise SignatureError("no signature matches")
