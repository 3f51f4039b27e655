"""One-line notices after a redirect, without a cookie of their own.

A signed-in user's notices are Django messages kept in the server-side session
(``MESSAGE_STORAGE``). A visitor who is not signed in has no session, and AURA
gives them none just to carry a notice: the redirect names one of the fixed notices
below in its address (``?notice=contact-sent``). Nothing personal goes in the address.
"""

from django.contrib import messages
from django.shortcuts import redirect, resolve_url
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _

NOTICES = {
    "contact-sent": ("success", _("Thank you! Your message is on its way to our support team.")),
    "email-confirmed": ("success", _("Your email address is confirmed. Log in to continue.")),
    "sign-in-expired": ("error", _("Log in again: the sign-in took too long.")),
    "deletion-canceled": ("success", _("Your account deletion is canceled. Log in to continue.")),
    "session-ended": ("success", _("This session is ended. Log in again to continue here.")),
}
_LEVELS = {"success": messages.SUCCESS, "error": messages.ERROR}


def redirect_with_notice(request, to, notice: str, *, message: str | None = None):
    """Redirect to ``to`` with a notice: a session message when signed in (``message`` if given), else ``?notice=``."""
    kind, text = NOTICES[notice]
    if request.user.is_authenticated:
        messages.add_message(request, _LEVELS[kind], message or text)
        return redirect(to)
    return redirect(f"{resolve_url(to)}?{urlencode({'notice': notice})}")


def notice(request) -> dict:
    """Context processor: the notice this address names, if it is one of ours."""
    code = request.GET.get("notice") if hasattr(request, "GET") else None
    if code not in NOTICES:
        return {}
    kind, text = NOTICES[code]
    return {"notice": {"kind": kind, "text": text}}
