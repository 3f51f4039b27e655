from django import forms
from django.utils.translation import gettext_lazy as _

from .providers import PROVIDER_CHOICES


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80, help_text=_("Where the key is used, e.g. “backend production”."))


class ProviderKeyForm(forms.Form):
    provider = forms.ChoiceField(label=_("Provider"), choices=PROVIDER_CHOICES)
    api_key = forms.CharField(
        label=_("API key"),
        max_length=400,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=_("Encrypted with AES-256-GCM before it is stored. You will only ever see its last 4 characters."),
    )
    base_url = forms.URLField(
        label=_("Base URL (optional)"),
        required=False,
        max_length=300,
        assume_scheme="https",
        help_text=_(
            "Only for OpenAI-compatible servers (vLLM, Ollama, LM Studio, Azure-style gateways) or a provider's regional endpoint."
        ),
    )
    label = forms.SlugField(
        label=_("Label (optional)"),
        required=False,
        max_length=40,
        help_text=_("For an OpenAI-compatible server, the label names it in model ids: “label/model-name”."),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("provider") == "custom":
            if not cleaned.get("base_url"):
                self.add_error("base_url", _("An OpenAI-compatible server needs its base URL."))
            if not cleaned.get("label"):
                self.add_error("label", _("Give the server a label: you will call its models as “label/model”."))
        return cleaned


class ReplaceKeyForm(forms.Form):
    api_key = ProviderKeyForm.base_fields["api_key"]
