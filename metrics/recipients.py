"""The page an alert recipient's confirmation link opens: no sign-in, since the recipient may have no account."""

from django.shortcuts import render
from django.utils.translation import gettext as _
from django_ratelimit.decorators import ratelimit

from . import services


@ratelimit(key="ip", rate="30/h", block=True)
def confirm(request, token):
    confirmed = services.recipient_confirm(token=token)
    if confirmed is None:
        reason = _("This link is not valid any more: it expired, or the account no longer sends its alerts to this address.")
        return render(request, "metrics/recipient_confirmed.html", {"reason": reason}, status=400)
    prefs, address = confirmed
    return render(request, "metrics/recipient_confirmed.html", {"address": address, "account": prefs.user.email})
