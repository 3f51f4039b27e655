"""Paddle webhook signatures: ``Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]``.

h1 is HMAC-SHA256 with the endpoint secret over ``"<ts>:<raw body>"``. Any h1 may
match (Paddle sends several while a secret rotates); ``ts`` must be recent.

Also the signature of the account id a checkout carries: Paddle.js's customData comes
back in the webhooks, but the browser sets it, so an id counts only with AURA's signature.
"""

import hashlib
import hmac
import re
import time

from django.utils.crypto import constant_time_compare, salted_hmac


class SignatureError(Exception):
    """Why a notification was refused (safe to log: never contains the body)."""


# ASCII only: str.isdigit() takes "²", and hmac.compare_digest() refuses a str that is not ASCII.
TIMESTAMP, HEX = re.compile(r"[0-9]{1,12}"), re.compile(r"[0-9a-fA-F]+")


def parse(header: str) -> tuple[int, list[str]]:
    timestamp, signatures = None, []
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "ts" and TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif name == "h1" and HEX.fullmatch(value):
            signatures.append(value.lower())
        elif name in ("ts", "h1"):
            raise SignatureError("malformed signature header")
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


ACCOUNT_SALT = "aura.billing.checkout-account"  # this HMAC's own key, apart from every other use of SECRET_KEY


def account_sign(account_id) -> str:
    """What the checkout page puts beside the account id (views._paddle_context), under SECRET_KEY."""
    return salted_hmac(ACCOUNT_SALT, str(account_id), algorithm="sha256").hexdigest()


def account_verify(account_id, signature) -> bool:
    return isinstance(signature, str) and constant_time_compare(account_sign(account_id), signature)
