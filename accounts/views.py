import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_ratelimit.decorators import ratelimit

from aura.notices import redirect_with_notice

from . import security, services
from .forms import (
    CodeForm,
    LoginForm,
    PasswordAndCodeForm,
    PasswordChangeForm,
    ProfileForm,
    ResetForm,
    SetupCodeForm,
    SignupForm,
    ThemeForm,
)
from .models import User, UserSession


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
    if request.user.is_authenticated and request.user.pk != user.pk:  # another account's link, opened while signed in
        messages.info(request, _("The address %(email)s of another AURA account is confirmed.") % {"email": user.email})
        return redirect("dashboard")
    confirmed = _("Your email address %(email)s is confirmed.") % {"email": user.email}
    return redirect_with_notice(request, "dashboard" if request.user.is_authenticated else "login", "email-confirmed", message=confirmed)


@login_required
@require_POST
@ratelimit(key="user", rate="5/h", block=True)
def resend_verification(request):
    if not request.user.email_verified:
        services.email_verification_send(user=request.user, email=request.user.email)
        messages.success(request, _("A new confirmation link is on its way to %(email)s.") % {"email": request.user.email})
    return redirect("dashboard")


TWO_FACTOR_SECONDS = 300


@method_decorator(ratelimit(key="ip", rate="20/m", method="POST", block=True), name="dispatch")
class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if not security.has_two_factor(user):
            return super().form_valid(form)
        # The password was right; the session is not logged in until the second factor is.
        self.request.session.cycle_key()
        self.request.session["2fa"] = {"user": user.pk, "at": time.time(), "next": self.get_success_url()}
        return redirect("login_two_factor")


@ratelimit(key="ip", rate="20/m", method="POST", block=True)
def login_two_factor(request):
    pending = request.session.get("2fa") or {}
    user = User.objects.filter(pk=pending.get("user"), is_active=True).first()
    if user is None or time.time() - pending.get("at", 0) > TWO_FACTOR_SECONDS:
        request.session.pop("2fa", None)
        return redirect_with_notice(request, "login", "sign-in-expired")
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        if security.is_locked(user):
            form.add_error(None, LoginForm.error_messages["locked"])
        elif security.verify_code(user, code) or security.use_recovery_code(user, code):
            request.session.pop("2fa", None)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if user.recovery_codes.filter(used__isnull=True).count() <= 2:
                messages.warning(request, _("You are running out of recovery codes: make new ones in Settings."))
            next_url = pending.get("next") or "/dashboard/"
            return redirect(next_url if url_has_allowed_host_and_scheme(next_url, {request.get_host()}) else "/dashboard/")
        else:
            services.login_event_record(user=user, request=request, succeeded=False)
            security.login_failed(user=user)
            form.add_error("code", _("That code is not valid (or was already used)."))
    return render(request, "accounts/login_two_factor.html", {"form": form})


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
        with translation.override(request.user.language):  # the next page speaks the language just saved: so do these
            messages.success(request, _("Your profile is saved."))
            if pending:
                messages.info(
                    request, _("Confirm %(email)s from your inbox to start using it.") % {"email": profile_form.cleaned_data["email"]}
                )
        return redirect("settings")  # in the language just saved: the account's is the one its pages use
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
        "browser_sessions": security.sessions_live(user=request.user),
        "current_session": request.session.session_key,
        "two_factor": security.has_two_factor(request.user),
    }
    return render(request, "accounts/settings.html", context, status=status)


@login_required
@require_POST
def password_change(request):
    form = PasswordChangeForm(request.user, request.POST)
    if form.is_valid():
        form.save()
        previous = request.session.session_key
        update_session_auth_hash(request, form.user)  # this browser stays in, under a new session key
        security.session_rekeyed(previous=previous, current=request.session.session_key)
        security.sessions_end_others(user=form.user, keep=request.session.session_key)
        messages.success(request, _("Your password is changed."))
        return redirect("settings")
    return _render_settings(request, password_form=form)


@require_POST
def set_language(request):
    """Switch language: the account's, for a signed-in user (its pages and its emails); a visitor's
    stays in the browser (localStorage, set by the switcher's script), and the page it goes back to
    carries it in its address. No cookie either way (privacy policy §8)."""
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        return HttpResponseBadRequest(_("Unknown language."))
    # Checked as it will be sent: re-assembling the address drops a tab or newline the check saw
    # ("/\t//evil.example" became "//evil.example", another site).
    lang = None if request.user.is_authenticated else language
    try:
        target = _with_query(request.POST.get("next", "/"), lang=lang)
    except ValueError:  # not an address urlsplit can read ("http://[::1")
        target = ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = _with_query("/", lang=lang)
    if request.user.is_authenticated and request.user.language != language:
        request.user.language = language
        request.user.save(update_fields=["language", "updated"])
    return redirect(target)


def _with_query(url: str, **changes) -> str:
    """``url`` with its query's parameters set (or, given None, removed)."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if name not in changes]
    query += [(name, value) for name, value in changes.items() if value is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


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


@login_required
@require_POST
def session_revoke(request, pk):
    session = get_object_or_404(UserSession, pk=pk, user=request.user)
    if session.session_key == request.session.session_key:
        logout(request)  # this browser's own session: end it the way logging out does
        security.session_end(session=session)
        return redirect_with_notice(request, "login", "session-ended")
    security.session_end(session=session)
    messages.success(request, _("That session is ended."))
    return redirect("settings")


@login_required
@require_POST
def sessions_revoke_others(request):
    ended = security.sessions_end_others(user=request.user, keep=request.session.session_key)
    messages.success(request, _("Ended %(count)s other session(s).") % {"count": ended})
    return redirect("settings")


@login_required
def two_factor_settings(request):
    """Enable (scan, confirm), regenerate recovery codes, or disable."""
    user = request.user
    enabled = security.has_two_factor(user)
    context = {"enabled": enabled, "remaining": user.recovery_codes.filter(used__isnull=True).count()}
    if not enabled:
        secret = security.pending_secret(request, user)
        form = SetupCodeForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            if security.verify_setup_code(secret, form.cleaned_data["code"]):
                codes = security.two_factor_enable(user=user, secret=secret, request=request)
                request.session.pop("2fa_setup", None)
                return _show_codes(request, codes, _("Two-factor authentication is on. Your other sessions were ended."))
            form.add_error("code", _("That code is not valid. Check the clock of your phone and try the next code."))
        uri = security.provisioning_uri(user, secret)
        context.update(form=form, qr=security.qr_svg(uri), secret=secret)
    else:
        context["manage_form"] = PasswordAndCodeForm(user=user)
    response = render(request, "accounts/two_factor.html", context)
    response["Cache-Control"] = "no-store"
    return response


def _show_codes(request, codes, message):
    messages.success(request, message)
    response = render(request, "accounts/recovery_codes.html", {"codes": codes})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@ratelimit(key="user", rate="10/h", block=True)
def two_factor_manage(request, action):
    if action not in ("disable", "recovery-codes"):
        raise Http404
    form = PasswordAndCodeForm(request.POST, user=request.user)
    if not form.is_valid():
        remaining = request.user.recovery_codes.filter(used__isnull=True).count()
        response = render(request, "accounts/two_factor.html", {"enabled": True, "manage_form": form, "remaining": remaining}, status=400)
        response["Cache-Control"] = "no-store"
        return response
    if action == "disable":
        security.two_factor_disable(user=request.user)
        messages.success(request, _("Two-factor authentication is off."))
        return redirect("settings")
    return _show_codes(request, security.recovery_codes_issue(user=request.user), _("New recovery codes: the old ones no longer work."))
