"""The page an alert recipient's confirmation link opens: no sign-in, since the recipient may have no
account. Opening the link asks; only the button confirms: mail scanners open links on delivery."""

from django.shortcuts import render
from django.utils.translation import gettext as _
from django_ratelimit.decorators import ratelimit

from . import services


@ratelimit(key="ip", rate="30/h", block=True)
def confirm(request, token):
    named = (services.recipient_confirm if request.method == "POST" else services.recipient_named)(token=token)
    if named is None:
        reason = _("This link is not valid any more: it expired, or the account no longer sends its alerts to this address.")
        return render(request, "metrics/recipient_confirmed.html", {"reason": reason}, status=400)
    prefs, address = named
    context = {"address": address, "account": prefs.user.email, "confirmed": request.method == "POST"}
    return render(request, "metrics/recipient_confirmed.html", context)
