"""Account workflows: sign-up, email verification, profile changes, login history."""

import logging
import secrets

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import transaction
from django.urls import reverse
from django.utils.crypto import salted_hmac
from user_agents import parse as parse_user_agent

from aura.emails import send_email
from aura.http import client_ip

from .models import LoginEvent, User

log = logging.getLogger(__name__)

VERIFY_SALT = "accounts.verify-email"


class VerificationError(Exception):
    """A verification link that is expired, forged or no longer applies."""


def user_create(*, email: str, password: str, display_name: str, language: str = "en", verified: bool = False) -> User:
    return User.objects.create_user(email, password, display_name=display_name, language=language, email_verified=verified)


def user_signup(*, email: str, password: str, display_name: str, language: str) -> User:
    with transaction.atomic():
        user = user_create(email=email, password=password, display_name=display_name, language=language)
    email_verification_send(user=user, email=user.email)
    return user


def _account_state(user: User) -> str:
    """What a link was issued against: the account's address and password. Once either changes, the
    links issued before no longer apply (a sign-up link cannot take the address back after a change)."""
    return salted_hmac(VERIFY_SALT, f"{user.pk}:{user.email}:{user.password}", algorithm="sha256").hexdigest()[:24]


def _pending_change_key(user_id: int) -> str:
    return f"acct:email-change:{user_id}"


def email_verification_send(*, user: User, email: str) -> None:
    """Mail a signed, expiring link that proves ``email`` belongs to ``user``.

    The address travels inside the signed token, so an email change only takes effect once the new
    address is proven. The link is bound to the account as it is now (address and password), and a
    change's link to that change alone: asking for another change drops the one pending, and
    confirming it uses it up.
    """
    claims = {"u": user.pk, "e": email, "s": _account_state(user)}
    if email != user.email:
        claims["n"] = secrets.token_urlsafe(9)
        cache.set(_pending_change_key(user.pk), claims["n"], settings.EMAIL_VERIFICATION_MAX_AGE)
    token = signing.dumps(claims, salt=VERIFY_SALT, compress=True)
    link = settings.SITE_URL + reverse("verify_email", args=[token])
    hours = settings.EMAIL_VERIFICATION_MAX_AGE // 3600
    changing = email != user.email
    send_email(
        "verify-email",
        to=email,
        context={"user": user, "link": link, "hours": hours, "changing": changing},
        language=user.language,
    )


def email_verify(*, token: str) -> User:
    try:
        data = signing.loads(token, salt=VERIFY_SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE)
        user = User.objects.get(pk=data["u"], is_active=True)
        email = User.objects.normalize_email(data["e"])
    except signing.SignatureExpired:
        raise VerificationError("expired") from None
    except (signing.BadSignature, User.DoesNotExist, KeyError, TypeError):
        raise VerificationError("invalid") from None

    current = data.get("s") == _account_state(user)
    if email == user.email and not current:
        if user.email_verified:
            return user  # a link used already (its change made): nothing to do
        raise VerificationError("invalid")  # issued before the password changed
    if email != user.email:
        pending = cache.get(_pending_change_key(user.pk))
        if not current or not pending or data.get("n") != pending:
            raise VerificationError("invalid")  # an older address's link, or a change since replaced or made
        if User.objects.filter(email=email).exclude(pk=user.pk).exists():
            raise VerificationError("taken")
        cache.delete(_pending_change_key(user.pk))
        old_email = user.email
        user.email = email
        user.email_verified = True
        user.save(update_fields=["email", "email_verified", "updated"])
        send_email("email-changed", to=old_email, context={"user": user, "new_email": email}, language=user.language)
    elif not user.email_verified:
        user.email_verified = True
        user.save(update_fields=["email_verified", "updated"])
    return user


def profile_update(*, user: User, display_name: str, email: str, language: str) -> bool:
    """Save the profile; return True when a new address awaits verification."""
    user.display_name = display_name
    user.language = language
    user.save(update_fields=["display_name", "language", "updated"])
    email = User.objects.normalize_email(email)
    if email != user.email:
        email_verification_send(user=user, email=email)
        return True
    return False


def login_event_record(*, user: User, request, succeeded: bool) -> LoginEvent:
    agent = parse_user_agent(request.META.get("HTTP_USER_AGENT", "")[:512]) if request else None
    return LoginEvent.objects.create(
        user=user,
        succeeded=succeeded,
        ip=client_ip(request) if request else None,
        browser=(f"{agent.browser.family} {agent.browser.version_string}".strip() if agent else "")[:64],
        os=(f"{agent.os.family} {agent.os.version_string}".strip() if agent else "")[:64],
    )
