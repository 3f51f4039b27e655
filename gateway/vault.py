"""The provider key vault: envelope encryption with AES-256-GCM.

Each user has a random 256-bit data key, stored only wrapped (encrypted) by
the newest master key of ``AURA_VAULT_KEYS``. Each provider key is encrypted
under its owner's data key with a random 96-bit nonce and associated data that
binds the ciphertext to its owner and record id, so a ciphertext copied to
another row or user fails to decrypt. Deleting the data key makes every copy
of every provider key of that user unreadable, backups included.
"""

import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

NONCE_BYTES = 12


class VaultError(Exception):
    """A ciphertext that cannot be opened. Never carries key material."""


def _master(version: int) -> AESGCM:
    try:
        return _aead(settings.AURA_VAULT_KEYS[version])
    except KeyError:
        raise VaultError(f"master key version {version} is not in AURA_VAULT_KEYS") from None


@functools.lru_cache(maxsize=16)
def _aead(key: bytes) -> AESGCM:
    """The cipher for a master key, made once (every /v1 call unwraps a data key with it)."""
    return AESGCM(key)


def newest_master_version() -> int:
    return max(settings.AURA_VAULT_KEYS)


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def _open(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    try:
        return aead.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), aad)
    except (InvalidTag, ValueError):
        raise VaultError("ciphertext does not open with this key and context") from None


def _dek_aad(user_id: int) -> bytes:
    return f"aura:data-key:{user_id}".encode()


def _secret_aad(user_id: int, record_id) -> bytes:
    return f"aura:provider-key:{user_id}:{record_id}".encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_data_key(dek: bytes, *, user_id: int, version: int | None = None) -> tuple[int, bytes]:
    version = version or newest_master_version()
    return version, _seal(_master(version), dek, _dek_aad(user_id))


def unwrap_data_key(wrapped: bytes, *, user_id: int, version: int) -> bytes:
    return _open(_master(version), wrapped, _dek_aad(user_id))


def encrypt_secret(secret: str, *, dek: bytes, user_id: int, record_id) -> bytes:
    return _seal(AESGCM(dek), secret.encode(), _secret_aad(user_id, record_id))


def decrypt_secret(blob: bytes, *, dek: bytes, user_id: int, record_id) -> str:
    return _open(AESGCM(dek), blob, _secret_aad(user_id, record_id)).decode()


def seal_with_master(secret: bytes, *, context: str) -> tuple[int, bytes]:
    """Encrypt a small secret of AURA's own (e.g. a TOTP seed) under the newest master key."""
    version = newest_master_version()
    return version, _seal(_master(version), secret, f"aura:{context}".encode())


def open_with_master(blob: bytes, *, version: int, context: str) -> bytes:
    return _open(_master(version), blob, f"aura:{context}".encode())
