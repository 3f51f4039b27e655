"""Login history: Django's own auth signals are the one place every login passes."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .models import User
from .services import login_event_record


@receiver(user_logged_in)
def record_login(sender, request, user, **kwargs):
    from .security import login_succeeded, session_record

    login_event_record(user=user, request=request, succeeded=True)
    login_succeeded(user=user)
    if request is not None and hasattr(request, "session"):
        session_record(user=user, request=request)
    # Logging in within the 30 days cancels a deletion request, as the confirmation email says.
    from django.contrib import messages
    from django.utils.translation import gettext as _

    from .privacy import deletion_cancel

    if deletion_cancel(user=user) and request is not None and hasattr(request, "_messages"):
        messages.success(
            request,
            _("Welcome back! Your account deletion is canceled. Add your provider keys and issue a new AURA key to use the API again."),
        )


@receiver(user_logged_out)
def forget_browser(sender, request, user, **kwargs):
    """A browser that logged out is no longer a signed-in one: it leaves the sessions list at once."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        from .models import UserSession

        UserSession.objects.filter(session_key=key).delete()


@receiver(user_login_failed)
def record_failed_login(sender, credentials, request=None, **kwargs):
    # Only attempts on an existing account are kept; an unknown address is nobody's data.
    email = User.objects.normalize_email(credentials.get("username") or credentials.get("email"))
    user = User.objects.filter(email=email).first()
    if user is not None:
        from .security import login_failed

        login_event_record(user=user, request=request, succeeded=False)
        login_failed(user=user)
