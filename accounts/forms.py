from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.utils.translation import gettext_lazy as _

from aura.emails import send_email

from .models import THEMES, User


class EmailField(forms.EmailField):
    def clean(self, value):
        return User.objects.normalize_email(super().clean(value))


# Bidirectional-text controls (embeddings, overrides, isolates): in a name they would reverse the
# text shown after it, on every page and in every email that greets the user.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])


class DisplayNameField(forms.CharField):
    def to_python(self, value):
        value = super().to_python(value)
        return value.translate(_BIDI_CONTROLS).strip() if value else value


class SignupForm(forms.Form):
    display_name = DisplayNameField(label=_("Display name"), max_length=80)
    email = EmailField(label=_("Email"), max_length=254)
    password = forms.CharField(label=_("Password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def clean_email(self):
        email = self.cleaned_data["email"]
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError(_("An account with this email already exists. Log in or reset your password."))
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            candidate = User(email=cleaned.get("email", ""), display_name=cleaned.get("display_name", ""))
            try:
                password_validation.validate_password(password, candidate)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class LoginForm(AuthenticationForm):
    username = EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))
    error_messages = {
        "invalid_login": _("That email and password do not match an account."),
        "inactive": _("This account is inactive."),
        "locked": _("Too many failed attempts: this account is locked for 15 minutes. Its owner has been told by email."),
    }

    def clean(self):
        from .security import is_locked

        email = User.objects.normalize_email(self.data.get("username"))
        user = User.objects.filter(email=email).first()
        if user is not None and is_locked(user):
            raise forms.ValidationError(self.error_messages["locked"], code="locked")
        return super().clean()


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from your authenticator app, or a recovery code"),
        max_length=20,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
    )


class SetupCodeForm(CodeForm):
    """Turning two-factor on: there are no recovery codes yet, only the app's code."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].label = _("Code from your authenticator app")
        self.fields["code"].widget.attrs.pop("autofocus")  # the QR code to scan comes first, above the field


class PasswordAndCodeForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    code = forms.CharField(
        label=_("Code from your authenticator app"),
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean(self):
        from .security import verify_code

        cleaned = super().clean()
        if cleaned.get("password") and not self.user.check_password(cleaned["password"]):
            self.add_error("password", _("That is not your password."))
        elif cleaned.get("code") and not verify_code(self.user, cleaned["code"]):
            self.add_error("code", _("That code is not valid (or was already used)."))
        return cleaned


class ProfileForm(forms.Form):
    display_name = DisplayNameField(label=_("Display name"), max_length=80)
    email = EmailField(label=_("Email"), max_length=254, help_text=_("A new address takes effect once you confirm it from your inbox."))
    language = forms.ChoiceField(label=_("Language for emails and the cabinet"), choices=settings.LANGUAGES)

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_email(self):
        email = self.cleaned_data["email"]
        if email != self.user.email and User.objects.filter(email=email).exists():
            raise forms.ValidationError(_("Another account already uses this email."))
        return email


class ThemeForm(forms.Form):
    theme = forms.ChoiceField(choices=THEMES)


class ContactForm(forms.Form):
    name = forms.CharField(label=_("Your name"), max_length=80)
    email = forms.EmailField(label=_("Your email"), max_length=254)
    subject = forms.CharField(label=_("Subject"), max_length=120)
    message = forms.CharField(label=_("Message"), max_length=5000, widget=forms.Textarea(attrs={"rows": 6}))


class ResetForm(PasswordResetForm):
    """Django's reset form, sending through AURA's one email helper in the user's language."""

    email = EmailField(label=_("Email"), max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))

    def get_users(self, email):
        return User.objects.filter(email=User.objects.normalize_email(email), is_active=True)

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, html_email_template_name=None):
        user = context["user"]
        link = settings.SITE_URL + f"/reset/{context['uid']}/{context['token']}/"
        hours = settings.PASSWORD_RESET_TIMEOUT // 3600
        send_email("password-reset", to=to_email, context={"user": user, "link": link, "hours": hours}, language=user.language)


class PrivacyChoicesForm(forms.Form):
    restrict = forms.BooleanField(
        label=_("Restrict processing"),
        required=False,
        help_text=_("AURA uses your data only to deliver the service: your usage is left out of every aggregate, statistic and analysis."),
    )
    object_to_analytics = forms.BooleanField(
        label=_("Object to analytics"),
        required=False,
        help_text=_("Your usage is left out of the anonymised aggregates that tune routing and compression."),
    )


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"), strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    code = forms.CharField(label=_("Code from your authenticator app"), max_length=20, required=False)
    confirm = forms.BooleanField(label=_("I understand what happens to my data, as described above"))

    def __init__(self, *args, user, **kwargs):
        from .security import has_two_factor

        self.user = user
        super().__init__(*args, **kwargs)
        if not has_two_factor(user):
            del self.fields["code"]

    def clean_password(self):
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError(_("That is not your password."))
        return password

    def clean_code(self):
        from .security import verify_code

        code = self.cleaned_data.get("code", "")
        if not verify_code(self.user, code):
            raise forms.ValidationError(_("That code is not valid (or was already used)."))
        return code


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    """Django's, without its autofocus: autofocus belongs where the form is the page's whole purpose
    (logging in and its second step); this one sits below the profile on Settings, and focusing it
    scrolled a phone half a page down."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["old_password"].widget.attrs.pop("autofocus", None)
