"""Gateway workflows: AURA keys and the provider key vault."""

import hashlib
import logging
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from aura import cache
from billing.selectors import current_plan, plan_cache_key

from . import vault
from .models import ApiKey, DataKey, ProviderKey
from .providers import PROVIDERS

log = logging.getLogger(__name__)

KEY_PREFIX = "aura_"
_MISSING = "-"


# AURA keys ------------------------------------------------------------------------


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_digest(secret: str) -> str:
    """What a node may hold of a presented key: its SHA-256, as stored."""
    return _digest(secret)


def _auth_cache_key(digest: str) -> str:
    return f"gw:auth:{digest}"


@dataclass(frozen=True)
class Caller:
    """Who is calling /v1 and how their key treats calls: what a node caches (no secret in it)."""

    key_id: int
    user_id: int
    compression: str = "lossless"
    cache_enabled: bool = False
    cache_ttl: int = 3600
    routing_policy: str = "cost"
    allowed_models: tuple = ()
    fallback_models: tuple = ()
    reference_model: str = "gpt-4o"
    analytics: bool = True  # False when the account restricted processing or objected
    rpm_limit: int | None = None  # the key's own limits, below the plan's
    tpm_limit: int | None = None


_CALLER_FIELDS = ("id", "user_id", *ApiKey.SETTINGS, "user__restricted_at", "user__objected_at")


class KeyLimitReached(ValueError):
    """The plan's number of active AURA keys is reached; the message says so and what to do."""


def api_key_issue(*, user, name: str) -> tuple[ApiKey, str]:
    """Create a key; the returned secret is shown once and never stored.

    At most the plan's number of active keys: a revoked key does not count, and after a downgrade
    the keys already issued keep working, but no new one is issued until some are revoked.
    """
    allowed = current_plan(user.pk)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # one issue at a time per account
        active = ApiKey.objects.filter(user=user, revoked__isnull=True).count()
        if active >= allowed.api_keys:
            raise KeyLimitReached(
                _(
                    "The %(plan)s plan allows %(allowed)d active AURA keys and you have %(active)d. "
                    "Revoke one you no longer use, or upgrade on the billing page."
                )
                % {"plan": allowed.name, "allowed": allowed.api_keys, "active": active}
            )
        key = ApiKey.objects.create(user=user, name=name, prefix=secret[:12], digest=_digest(secret))
    return key, secret


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked is None:
        key.revoked = timezone.now()
        key.save(update_fields=["revoked"])
    # Every node reads the shared cache first, so deleting the entry revokes everywhere at once.
    cache.delete(_auth_cache_key(key.digest))


# A key never changes hands, so each node may remember whose it is: then one round trip
# fetches the key's entry together with its account's plan and vault.
_owners: dict[str, int] = {}
_OWNERS_MAX = 100_000


def api_key_admit(secret: str) -> tuple[Caller | None, dict]:
    """The caller a key names (None when unknown or revoked), and what the same round trip found.

    The second value maps ``"plan"`` and ``"vault"`` to the account's cached entries,
    when they were there, for ``current_plan`` and ``sealed_vault`` to use.
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) > 100:
        return None, {}
    digest = _digest(secret)
    auth_key = _auth_cache_key(digest)
    owner = _owners.get(digest)
    raw = {}
    if cache.redis() is None:
        found = cache.get_many([auth_key] if owner is None else [auth_key, plan_cache_key(owner), _vault_cache_key(owner)])
    else:
        if owner is not None:
            raw = cache.get_many_raw([auth_key, plan_cache_key(owner), _vault_cache_key(owner)])
        else:
            # A key this node has not seen, which another node may have cached: whose it is first,
            # then the account's entries, so that the next call here is admitted in one round trip.
            raw = cache.get_many_raw([auth_key])
            entry = cache.loads(raw[auth_key]) if auth_key in raw else None
            if isinstance(entry, Caller):
                owner = entry.user_id
                raw.update(cache.get_many_raw([plan_cache_key(owner), _vault_cache_key(owner)]))
        found = {name: cache.loads(value) for name, value in raw.items()}
    cached = found.get(auth_key)
    if cached is None:
        row = ApiKey.objects.filter(digest=digest, revoked__isnull=True, user__is_active=True).values_list(*_CALLER_FIELDS).first()
        cached = _caller_from_row(row) if row else _MISSING
        # Unknown keys are remembered briefly so a flood of bad keys does not reach the database.
        cache.set(auth_key, cached, settings.AURA_AUTH_CACHE_SECONDS if row else 30)
    if cached == _MISSING:
        return None, {}
    if _owners.get(digest) is None:
        if len(_owners) >= _OWNERS_MAX:
            _owners.clear()
        _owners[digest] = cached.user_id
    if owner is None:
        return cached, {}
    prefetched = {"plan": found.get(plan_cache_key(owner)), "vault": found.get(_vault_cache_key(owner))}
    if auth_key in raw and plan_cache_key(owner) in raw:
        # SHA-1 because Redis scripts have it (redis.sha1hex): it tells a changed entry, no secret rests on it.
        expect = {name: hashlib.sha1(raw[name]).hexdigest() for name in (auth_key, plan_cache_key(owner))}  # noqa: S324
        _remember(digest, cached, prefetched["plan"], expect)
    return cached, prefetched


# A warm key is admitted in one round trip: each node remembers, per key, the caller and the plan
# it last admitted and a digest of each cache entry they came from. The limits script counts a
# call under them only if those entries are still exactly what they were, so a revoked key, a
# changed key setting, a new plan or an expired entry takes the full path (api_key_admit).
_known: dict[str, tuple[Caller, str, dict[str, str]]] = {}


def _remember(digest: str, caller: Caller, plan_code, expect: dict[str, str]) -> None:
    if len(_known) >= _OWNERS_MAX:
        _known.clear()
    _known[digest] = (caller, plan_code, expect)


def api_key_known(secret: str) -> tuple[Caller, str, dict[str, str]] | None:
    """What this node last admitted for the key: (caller, plan code, {cache key: sha1 of its entry})."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 100:
        return None
    return _known.get(_digest(secret))


def api_key_unknown(secret: str) -> None:
    """Forget what ``api_key_known`` remembered (its entries changed)."""
    _known.pop(_digest(secret), None)


def api_keys_known_reset() -> None:
    """Forget every key this node remembered (tests)."""
    _known.clear()
    _owners.clear()


def api_key_authenticate(secret: str) -> Caller | None:
    return api_key_admit(secret)[0]


def _caller_from_row(row) -> Caller:
    values = dict(zip(_CALLER_FIELDS, row, strict=True))
    values["key_id"] = values.pop("id")
    values["allowed_models"] = tuple(values["allowed_models"] or ())
    values["fallback_models"] = tuple(values["fallback_models"] or ())
    values["analytics"] = values.pop("user__restricted_at") is None and values.pop("user__objected_at") is None
    return Caller(**values)


def api_keys_forget(*, user) -> None:
    """Drop every node's cached view of the user's keys (after a change to the account itself)."""
    for digest in ApiKey.objects.filter(user=user).values_list("digest", flat=True):
        cache.delete(_auth_cache_key(digest))


def api_key_configure(*, key: ApiKey, **settings_) -> ApiKey:
    """Save how a key treats its calls; every node sees the change on its next call."""
    for name, value in settings_.items():
        setattr(key, name, value)
    key.save(update_fields=list(settings_))
    cache.delete(_auth_cache_key(key.digest))
    return key


def api_key_touch(key_id: int) -> None:
    """Record "last used": at most once a minute per key (the limits check says when), not on every request."""
    ApiKey.objects.filter(pk=key_id).update(last_used=timezone.now())


# Provider keys --------------------------------------------------------------------


class ProviderKeyError(ValueError):
    """A provider key that cannot be saved; the message is safe to show, in the active language, and
    ``field`` names the form field it is about."""

    def __init__(self, message: str, field: str = "api_key"):
        super().__init__(message)
        self.field = field


def vault_cache_key(user_id: int) -> str:
    return _vault_cache_key(user_id)


def _vault_cache_key(user_id: int) -> str:
    return f"gw:vault:{user_id}"


def _data_key(user, *, create: bool) -> bytes | None:
    row = DataKey.objects.filter(user_id=user.pk).first()
    if row is None:
        if not create:
            return None
        dek = vault.new_data_key()
        version, wrapped = vault.wrap_data_key(dek, user_id=user.pk)
        DataKey.objects.create(user_id=user.pk, master_version=version, wrapped=wrapped)
        return dek
    return vault.unwrap_data_key(bytes(row.wrapped), user_id=user.pk, version=row.master_version)


def check_base_url(base_url: str) -> None:
    """Refuse URLs AURA should not call: bad schemes, and private addresses or plain http unless allowed
    (``AURA_UPSTREAM_ALLOW_PRIVATE``: a self-hosted AURA beside its own servers, the demo)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderKeyError(_("The base URL must start with http:// or https:// and name a host."), "base_url")
    if settings.AURA_UPSTREAM_ALLOW_PRIVATE:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError:
        raise ProviderKeyError(_("The base URL's host does not resolve."), "base_url") from None
    from .upstream import is_public

    for address in addresses:
        if not is_public(address):
            raise ProviderKeyError(_("The base URL points to a private or local address, which this AURA does not call."), "base_url")
    if parts.scheme != "https":  # the privacy policy: keys travel only over TLS
        raise ProviderKeyError(_("The base URL must start with https://: AURA sends your key to it only over TLS."), "base_url")


def provider_key_save(
    *, user, provider: str, api_key: str, base_url: str = "", label: str = "", instance: ProviderKey | None = None
) -> ProviderKey:
    """Add a provider key, or replace the secret of ``instance``. Encrypts before anything is written."""
    if provider not in PROVIDERS:
        raise ProviderKeyError(_("Unknown provider %(provider)r.") % {"provider": provider}, "provider")
    api_key = api_key.strip()
    if len(api_key) < 8 or any(c.isspace() for c in api_key):
        raise ProviderKeyError(_("That does not look like an API key."))
    if provider == "custom" and not base_url:
        raise ProviderKeyError(_("An OpenAI-compatible server needs its base URL."), "base_url")
    if base_url:
        check_base_url(base_url)
    if label and ProviderKey.objects.filter(user=user, label=label).exclude(provider=provider).exists():
        raise ProviderKeyError(
            _("Another of your provider keys has this label. A label names one key in model ids (“label/model”): choose another."),
            "label",
        )
    with transaction.atomic():
        dek = _data_key(user, create=True)
        key = instance or ProviderKey(user=user, provider=provider)
        key.label = label
        key.base_url = base_url.rstrip("/")
        key.ciphertext = vault.encrypt_secret(api_key, dek=dek, user_id=user.pk, record_id=key.pk)
        key.last4 = api_key[-4:]
        key.check_status, key.checked = "unchecked", None
        key.save()
    cache.delete(_vault_cache_key(user.pk))
    return key


def provider_key_delete(*, key: ProviderKey) -> None:
    user_id = key.user_id
    key.delete()
    cache.delete(_vault_cache_key(user_id))


def provider_key_mark_checked(*, key: ProviderKey, status: str) -> None:
    key.check_status, key.checked = status, timezone.now()
    key.save(update_fields=["check_status", "checked", "updated"])
    cache.delete(_vault_cache_key(key.user_id))


@dataclass(frozen=True)
class SealedKey:
    """What a node may cache about a provider key: metadata and ciphertext, never the secret."""

    id: str
    provider: str
    label: str
    base_url: str
    ciphertext: bytes


def default_key(keys, provider: str):
    """Of ``keys`` (added last first), the one that serves ``provider``'s models asked for without a
    label: its key without a label, or else the one added last. A custom server's have none: its
    models are asked for by its label."""
    if provider == "custom":
        return None
    keys = [k for k in keys if k.provider == provider]
    return next((k for k in keys if not k.label), keys[0] if keys else None)


@dataclass(frozen=True)
class SealedVault:
    user_id: int
    master_version: int
    wrapped: bytes
    keys: tuple[SealedKey, ...]

    def default_key(self, provider: str) -> SealedKey | None:
        return default_key(self.keys, provider)

    def reveal(self, key: SealedKey) -> str:
        """Decrypt one provider key: called only at the moment a request is forwarded."""
        dek = vault.unwrap_data_key(self.wrapped, user_id=self.user_id, version=self.master_version)
        return vault.decrypt_secret(key.ciphertext, dek=dek, user_id=self.user_id, record_id=key.id)


def sealed_vault(user_id: int, cached=None) -> SealedVault | None:
    """The account's provider keys, sealed; ``cached`` is the cache entry when the caller already fetched it."""
    cache_key = _vault_cache_key(user_id)
    snapshot = cached if cached is not None else cache.get(cache_key)
    if snapshot is None:
        data_key = DataKey.objects.filter(user_id=user_id).first()
        rows = ProviderKey.objects.filter(user_id=user_id).order_by("-created")  # added last first: see pipeline.key_for
        keys = tuple(SealedKey(str(k.pk), k.provider, k.label, k.base_url, bytes(k.ciphertext)) for k in rows)
        snapshot = SealedVault(user_id, data_key.master_version, bytes(data_key.wrapped), keys) if data_key and keys else _MISSING
        cache.set(cache_key, snapshot, settings.AURA_AUTH_CACHE_SECONDS)
    return None if snapshot == _MISSING else snapshot


def data_key_shred(*, user) -> None:
    """Destroy the user's data key: every provider key ciphertext, anywhere (backups too), becomes
    noise. The rows go with it: kept, they would still be listed and block adding the provider
    again, and a data key made later for a new key would be tried on them."""
    with transaction.atomic():
        DataKey.objects.filter(user_id=user.pk).delete()
        ProviderKey.objects.filter(user_id=user.pk).delete()
    cache.delete(_vault_cache_key(user.pk))


def vault_rotate() -> int:
    """Re-encrypt every provider key under a fresh data key wrapped by the newest master key."""
    rotated = 0
    for data_key in DataKey.objects.select_related("user").iterator():
        user = data_key.user
        with transaction.atomic():
            locked = DataKey.objects.select_for_update().get(pk=data_key.pk)
            old = vault.unwrap_data_key(bytes(locked.wrapped), user_id=user.pk, version=locked.master_version)
            new = vault.new_data_key()
            for key in ProviderKey.objects.select_for_update().filter(user=user):
                try:
                    secret = vault.decrypt_secret(bytes(key.ciphertext), dek=old, user_id=user.pk, record_id=key.pk)
                except vault.VaultError:  # already noise (shredded before its rows were deleted with the data key)
                    log.warning("vault-rotate: provider key %s does not open with its account's data key; left as it is", key.pk)
                    continue
                key.ciphertext = vault.encrypt_secret(secret, dek=new, user_id=user.pk, record_id=key.pk)
                key.save(update_fields=["ciphertext"])
            locked.master_version, locked.wrapped = vault.wrap_data_key(new, user_id=user.pk)
            locked.save(update_fields=["master_version", "wrapped"])
        cache.delete(_vault_cache_key(user.pk))
        rotated += 1
    return rotated


CHECK_MESSAGES = {
    "ok": "checked with the provider",
    "rejected": "the provider rejected it",
    "unchecked": "not checked: the provider could not be reached",
}


def provider_key_check(*, key: ProviderKey) -> str:
    """A cheap authenticated call to the provider: "ok", "rejected" or "unchecked" (unreachable)."""
    from . import upstream
    from .adapters import ADAPTERS

    provider = PROVIDERS[key.provider]
    snapshot = sealed_vault(key.user_id)
    sealed = next((k for k in snapshot.keys if k.id == str(key.pk)), None) if snapshot else None
    if sealed is None:
        return "unchecked"
    request = ADAPTERS[provider.protocol].check_key(key.base_url or provider.base_url, snapshot.reveal(sealed))
    try:
        response = upstream.send(request, read_timeout=settings.AURA_KEY_CHECK_TIMEOUT)
        response.close()
    except Exception as error:  # unreachable, DNS, TLS: say so, never fail the save
        log.info("provider key check for %s not possible: %s", key.provider, type(error).__name__)
        status = "unchecked"
    else:
        status = (
            "rejected"
            if response.status_code in (401, 403) or (response.status_code == 400 and provider.protocol == "gemini")
            else ("ok" if response.status_code < 400 else "unchecked")
        )
    provider_key_mark_checked(key=key, status=status)
    return status
