"""The public site: landing, legal pages, contact, and the error pages."""

import logging
import smtplib

from django.conf import settings
from django.http import HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from django_ratelimit.decorators import ratelimit

from accounts.forms import ContactForm
from aura.emails import send_email
from aura.notices import redirect_with_notice

log = logging.getLogger(__name__)


def landing(request):
    return render(request, "site/landing.html")


# The public pages are for search engines; the cabinet, the API and the account links are not.
ROBOTS = """User-agent: *
Allow: /$
Allow: /pricing/
Allow: /privacy/
Allow: /terms/
Allow: /contact/
Disallow: /
"""


@require_safe
@cache_control(max_age=86400, public=True)
def robots(request):
    return HttpResponse(ROBOTS, content_type="text/plain; charset=utf-8")


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links: the site's icon is an SVG."""
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))


def privacy(request):
    return render(request, "site/privacy.html")


def terms(request):
    return render(request, "site/terms.html")


@ratelimit(key="ip", rate="5/h", method="POST", block=True)
def contact(request):
    initial = {}
    if request.user.is_authenticated:
        initial = {"name": request.user.display_name, "email": request.user.email}
    form = ContactForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            send_email("contact", to=settings.SUPPORT_EMAIL, context=form.cleaned_data, reply_to=form.cleaned_data["email"])
        except (smtplib.SMTPException, OSError) as error:
            log.error("contact email not sent: %s", type(error).__name__)
            form.add_error(
                None,
                _("We could not send your message just now. Please try again in a few minutes, or write to %(email)s.")
                % {"email": settings.SUPPORT_EMAIL},
            )
            return render(request, "site/contact.html", {"form": form}, status=503)
        return redirect_with_notice(request, "contact", "contact-sent")
    return render(request, "site/contact.html", {"form": form})


def ratelimited(request, exception=None):
    return render(request, "errors/429.html", status=429)


def error_404(request, exception=None):
    return render(request, "errors/404.html", status=404)


def error_500(request):
    return render(request, "errors/500.html", status=500)


def error_403(request, exception=None):
    return render(request, "errors/403.html", status=403)


def error_400(request, exception=None):
    return render(request, "errors/400.html", status=400)
