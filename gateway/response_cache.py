"""The private response cache: AURA answers a repeated request without calling the provider.

Private by construction:
- the Redis key is HMAC-SHA256(server secret, tenant + canonical request), so it
  reveals nothing and is never shared across accounts;
- the value is AES-256-GCM encrypted under a key derived (HKDF-SHA256) from the
  canonical request itself, so a dump of Redis holds no text, and nobody — the
  operator included — can open an entry without the exact request that made it.

Redis trouble never fails a call: ``aura.cache`` gives up quietly (one log line
a minute), with short socket timeouts bounding the wait.
"""

import hashlib
import hmac
import json
import logging
import os
import zlib

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from aura import cache

log = logging.getLogger(__name__)

# Everything that changes the answer is part of the key; delivery details are not.
_NOT_IN_KEY = {"stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
MAX_TTL = 30 * 24 * 3600


def canonical(body: dict, model_id: str, base_url: str = "") -> bytes:
    """The request as the cache sees it: the routed model, the server it is sent to when not the
    provider's own, every answer-changing field, sorted."""
    fields = {k: v for k, v in body.items() if k not in _NOT_IN_KEY}
    fields["model"] = model_id
    if base_url:  # (a model of the same name elsewhere is another model)
        fields["aura_server"] = base_url
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _redis_key(tenant: int, request: bytes) -> str:
    mac = hmac.new(settings.SECRET_KEY.encode(), f"aura-response-cache:{tenant}:".encode() + request, hashlib.sha256)
    return "gw:rc:" + mac.hexdigest()


def _value_key(tenant: int, request: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"aura-response-cache-v1", info=str(tenant).encode()).derive(request)


def lookup(tenant: int, request: bytes) -> dict | None:
    blob = cache.get(_redis_key(tenant, request))
    if not blob:
        return None
    try:
        plain = AESGCM(_value_key(tenant, request)).decrypt(blob[:12], blob[12:], b"aura-response-cache")
        return json.loads(zlib.decompress(plain))
    except (InvalidTag, ValueError, zlib.error):
        return None


def store(tenant: int, request: bytes, answer: dict, ttl: int) -> None:
    plain = zlib.compress(json.dumps(answer, separators=(",", ":")).encode())
    nonce = os.urandom(12)
    blob = nonce + AESGCM(_value_key(tenant, request)).encrypt(nonce, plain, b"aura-response-cache")
    cache.set(_redis_key(tenant, request), blob, min(max(ttl, 1), MAX_TTL))
