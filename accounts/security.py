"""Two-factor authentication, browser sessions and the account lockout."""

import hashlib
import hmac
import io
import secrets
import time
import unicodedata
from importlib import import_module

import pyotp
import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.utils import timezone
from user_agents import parse as parse_user_agent

from aura import cache
from aura.emails import send_email
from aura.http import client_ip

from .models import RecoveryCode, TwoFactor, User, UserSession

ISSUER = "AURA"
RECOVERY_CODES = 10
LOCK_AFTER = 10  # failed attempts on one account…
LOCK_WINDOW = 15 * 60  # …within this many seconds lock it for as long


# TOTP --------------------------------------------------------------------------------


def new_secret() -> str:
    return pyotp.random_base32()


def pending_secret(request, user: User) -> str:
    """The seed being enrolled, kept in the session sealed: session rows never hold it in plaintext."""
    from base64 import b64decode, b64encode

    from gateway.vault import VaultError, open_with_master, seal_with_master

    context = f"totp-setup:{user.pk}:{request.session.session_key}"
    stored = request.session.get("2fa_setup")
    try:
        return open_with_master(b64decode(stored["blob"]), version=stored["v"], context=context).decode()
    except (VaultError, ValueError, KeyError, TypeError):
        pass  # nothing pending, or sealed for another session or master key: start a new enrolment
    secret = new_secret()
    version, blob = seal_with_master(secret.encode(), context=context)
    request.session["2fa_setup"] = {"v": version, "blob": b64encode(blob).decode()}
    return secret


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    out = io.BytesIO()
    qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8).save(out)
    return out.getvalue().decode().split("?>", 1)[-1]


def _matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code this is: the current one or one either side, no further."""
    # Any script's digits (a phone's keyboard may give full-width ６ or Arabic-Indic ٦), read as ASCII.
    code = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in "".join(code.split()))
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // totp.interval
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _secret_of(device: TwoFactor) -> str:
    from gateway.vault import open_with_master

    return open_with_master(bytes(device.sealed_secret), version=device.master_version, context=f"totp:{device.user_id}").decode()


def verify_setup_code(secret: str, code: str) -> bool:
    return _matching_step(secret, code, time.time()) is not None


def verify_code(user: User, code: str) -> bool:
    """A TOTP code, accepted once: the step must be newer than the last one used."""
    device = TwoFactor.objects.filter(user=user).first()
    if device is None:
        return False
    step = _matching_step(_secret_of(device), code, time.time())
    if step is None:
        return False
    # Atomic: of two requests with the same code, only one moves last_step forward.
    return TwoFactor.objects.filter(pk=device.pk, last_step__lt=step).update(last_step=step) == 1


def _digest(user: User, code: str) -> str:
    normal = "".join(code.split()).replace("-", "").lower()
    return hmac.new(settings.SECRET_KEY.encode(), f"recovery:{user.pk}:{normal}".encode(), hashlib.sha256).hexdigest()


def use_recovery_code(user: User, code: str) -> bool:
    digest = _digest(user, code)
    return RecoveryCode.objects.filter(user=user, digest=digest, used__isnull=True).update(used=timezone.now()) == 1


def recovery_codes_issue(*, user: User) -> list[str]:
    """Ten fresh single-use codes, stored hashed, shown once; older codes stop working."""
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    with transaction.atomic():
        RecoveryCode.objects.filter(user=user).delete()
        RecoveryCode.objects.bulk_create([RecoveryCode(user=user, digest=_digest(user, c)) for c in codes])
    return codes


def two_factor_enable(*, user: User, secret: str, request) -> list[str]:
    from gateway.vault import seal_with_master

    version, sealed = seal_with_master(secret.encode(), context=f"totp:{user.pk}")
    TwoFactor.objects.update_or_create(
        user=user, defaults={"master_version": version, "sealed_secret": sealed, "enabled": timezone.now(), "last_step": 0}
    )
    codes = recovery_codes_issue(user=user)
    sessions_end_others(user=user, keep=request.session.session_key)
    return codes


def two_factor_disable(*, user: User) -> None:
    TwoFactor.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()


def has_two_factor(user: User) -> bool:
    return TwoFactor.objects.filter(user=user).exists()


# browser sessions ------------------------------------------------------------------


def _store() -> type[SessionBase]:
    return import_module(settings.SESSION_ENGINE).SessionStore


def session_record(*, user: User, request) -> None:
    if not request.session.session_key:
        request.session.save()
    agent = parse_user_agent(request.META.get("HTTP_USER_AGENT", "")[:512])
    device = f"{agent.browser.family} {agent.browser.version_string} · {agent.os.family} {agent.os.version_string}".strip()
    UserSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={"user": user, "ip": client_ip(request), "device": device[:120], "last_seen": timezone.now()},
    )


def session_touch(*, request) -> None:
    """Last seen, written at most once a minute per session."""
    key = request.session.session_key
    if key and cache.add(f"acct:seen:{key}", 1, 60):
        UserSession.objects.filter(session_key=key).update(last_seen=timezone.now(), ip=client_ip(request))


def session_rekeyed(*, previous: str | None, current: str | None) -> None:
    """The session went on under a new key (password change): keep listing it as this browser."""
    if previous and current and previous != current:
        UserSession.objects.filter(session_key=previous).update(session_key=current)


def sessions_live(*, user: User):
    """The account's signed-in browsers whose session has not expired (an expired one's row waits
    for the purge-logs job, but it is no longer signed in)."""
    from django.contrib.sessions.models import Session

    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    return user.browser_sessions.filter(session_key__in=live)


def session_end(*, session: UserSession) -> None:
    _store()(session_key=session.session_key).delete()
    session.delete()


def sessions_end_others(*, user: User, keep: str | None) -> int:
    ended = 0
    for session in UserSession.objects.filter(user=user).exclude(session_key=keep or ""):
        session_end(session=session)
        ended += 1
    return ended


# lockout ---------------------------------------------------------------------------


def _lock_key(user_id: int) -> str:
    return f"acct:lock:{user_id}"


def is_locked(user: User) -> bool:
    return bool(cache.get(_lock_key(user.pk)))


def login_failed(*, user: User) -> None:
    """Count a failed password or code; at the limit, lock the account and tell its owner once."""
    failures = cache.incr(f"acct:fails:{user.pk}", LOCK_WINDOW) or 0
    if failures >= LOCK_AFTER and cache.add(_lock_key(user.pk), 1, LOCK_WINDOW):
        send_email("account-locked", to=user.email, context={"user": user, "minutes": LOCK_WINDOW // 60}, language=user.language)


def login_succeeded(*, user: User) -> None:
    cache.delete(f"acct:fails:{user.pk}")
