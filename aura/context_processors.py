from django.conf import settings

from accounts.sessions import session_tag


def site(request):
    return {
        "SITE_URL": settings.SITE_URL,
        "SUPPORT_EMAIL": settings.SUPPORT_EMAIL,
        "PRIVACY_EMAIL": settings.PRIVACY_EMAIL,
    }


def session(request):
    """The public tag of a signed-in session, for aura.js to tell the other tabs; empty when signed out."""
    user = getattr(request, "user", None)
    if user is None:  # a page rendered before authentication ran: it knows nothing of the session
        return {}
    key = request.session.session_key
    return {"session_tag": session_tag(key) if user.is_authenticated and key else ""}
