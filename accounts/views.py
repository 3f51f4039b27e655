from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_ratelimit.decorators import ratelimit

from . import services
from .forms import LoginForm, ProfileForm, ResetForm, SignupForm, ThemeForm


@ratelimit(key="ip", rate="10/h", method="POST", block=True)
def signup(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = services.user_signup(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            display_name=form.cleaned_data["display_name"],
            language=request.LANGUAGE_CODE,
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, _("Welcome to AURA! We sent a confirmation link to %(email)s.") % {"email": user.email})
        return redirect("dashboard")
    return render(request, "accounts/signup.html", {"form": form})


def verify_email(request, token):
    try:
        user = services.email_verify(token=token)
    except services.VerificationError as error:
        reasons = {
            "expired": _("This confirmation link has expired. Log in and ask for a new one."),
            "invalid": _("This confirmation link is not valid. Check that you copied all of it."),
            "taken": _("Another account has confirmed this address in the meantime."),
        }
        return render(request, "accounts/verify_failed.html", {"reason": reasons[str(error)]}, status=400)
    messages.success(request, _("Your email address %(email)s is confirmed.") % {"email": user.email})
    return redirect("dashboard" if request.user.is_authenticated else "login")


@login_required
@require_POST
@ratelimit(key="user", rate="5/h", block=True)
def resend_verification(request):
    if not request.user.email_verified:
        services.email_verification_send(user=request.user, email=request.user.email)
        messages.success(request, _("A new confirmation link is on its way to %(email)s.") % {"email": request.user.email})
    return redirect("dashboard")


@method_decorator(ratelimit(key="ip", rate="20/m", method="POST", block=True), name="dispatch")
class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


@method_decorator(ratelimit(key="ip", rate="10/h", method="POST", block=True), name="dispatch")
class PasswordResetView(auth_views.PasswordResetView):
    form_class = ResetForm
    template_name = "accounts/password_reset.html"


@login_required
def settings_page(request):
    profile_form = ProfileForm(
        request.POST if request.method == "POST" else None,
        user=request.user,
        initial={"display_name": request.user.display_name, "email": request.user.email, "language": request.user.language},
    )
    if request.method == "POST" and profile_form.is_valid():
        pending = services.profile_update(user=request.user, **profile_form.cleaned_data)
        messages.success(request, _("Your profile is saved."))
        if pending:
            messages.info(
                request, _("Confirm %(email)s from your inbox to start using it.") % {"email": profile_form.cleaned_data["email"]}
            )
        response = redirect("settings")
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            request.user.language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            samesite="Lax",
            secure=settings.LANGUAGE_COOKIE_SECURE,
        )
        return response
    return _render_settings(request, profile_form=profile_form)


def _render_settings(request, *, profile_form=None, password_form=None, status=200):
    context = {
        "profile_form": profile_form
        or ProfileForm(
            user=request.user,
            initial={"display_name": request.user.display_name, "email": request.user.email, "language": request.user.language},
        ),
        "password_form": password_form or PasswordChangeForm(request.user),
        "login_events": request.user.login_events.all()[:20],
    }
    return render(request, "accounts/settings.html", context, status=status)


@login_required
@require_POST
def password_change(request):
    form = PasswordChangeForm(request.user, request.POST)
    if form.is_valid():
        form.save()
        update_session_auth_hash(request, form.user)
        messages.success(request, _("Your password is changed."))
        return redirect("settings")
    return _render_settings(request, password_form=form)


@require_POST
def set_language(request):
    """Switch language: the cookie for this browser, the account for emails."""
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        return HttpResponseBadRequest(_("Unknown language."))
    if request.user.is_authenticated and request.user.language != language:
        request.user.language = language
        request.user.save(update_fields=["language", "updated"])
    next_url = request.POST.get("next", "/")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        next_url = "/"
    response = redirect(next_url)
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        samesite="Lax",
        secure=settings.LANGUAGE_COOKIE_SECURE,
    )
    return response


@require_POST
def set_theme(request):
    """The theme lives in localStorage; a logged-in user's choice also follows them to other browsers."""
    form = ThemeForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"error": _("Unknown theme.")}, status=400)
    if request.user.is_authenticated:
        request.user.theme = form.cleaned_data["theme"]
        request.user.save(update_fields=["theme", "updated"])
    return JsonResponse({"theme": form.cleaned_data["theme"]})
