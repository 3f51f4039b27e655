"""One helper renders every email from three templates, in the recipient's language."""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation


def send_email(template: str, *, to: str, context: dict, language: str = "en", reply_to: str | None = None) -> None:
    """Render ``emails/<template>-subject.txt``, ``-body.txt`` and ``-body.html`` and send them.

    The text templates switch autoescaping off themselves; the HTML one keeps it on.
    """
    context = {"SITE_URL": settings.SITE_URL, "SUPPORT_EMAIL": settings.SUPPORT_EMAIL, **context}
    with translation.override(language):
        subject = " ".join(render_to_string(f"emails/{template}-subject.txt", context).split())
        text = render_to_string(f"emails/{template}-body.txt", context)
        html = render_to_string(f"emails/{template}-body.html", context)
    message = EmailMultiAlternatives(subject, text, to=[to], reply_to=[reply_to] if reply_to else None)
    message.attach_alternative(html, "text/html")
    message.send()
