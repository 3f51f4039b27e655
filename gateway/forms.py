import re

from django import forms
from django.utils.formats import number_format
from django.utils.translation import gettext_lazy as _

from . import catalog, routing
from .models import COMPRESSION_LEVELS, ROUTING_POLICIES
from .providers import PROVIDER_CHOICES, PROVIDERS


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80, help_text=_("Where the key is used, e.g. “backend production”."))
    # One issue per form: a reloaded or resubmitted page must not mint a second key.
    once = forms.UUIDField(widget=forms.HiddenInput)


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
        help_text=_(
            "Names this key in model ids: “label/model-name” calls the model with this key. An OpenAI-compatible server "
            "needs one; for another provider, model ids without a label use its key without a label."
        ),
    )

    def clean_label(self):
        label = self.cleaned_data["label"]
        if label.lower() in PROVIDERS or label.lower() == "aura":
            raise forms.ValidationError(_("“%(label)s/…” already names a provider in model ids: choose another label.") % {"label": label})
        return label

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("provider") == "custom":
            # (A value the field refused already has its error: "missing" would contradict it.)
            if not cleaned.get("base_url") and "base_url" not in self.errors:
                self.add_error("base_url", _("An OpenAI-compatible server needs its base URL."))
            if not cleaned.get("label") and "label" not in self.errors:
                self.add_error("label", _("Give the server a label: you will call its models as “label/model”."))
        return cleaned


class ReplaceKeyForm(forms.Form):
    api_key = ProviderKeyForm.base_fields["api_key"]


_LABEL = re.compile(r"[-a-zA-Z0-9_]{1,50}")  # a custom server's label (a slug, as its form takes it)
# A provider's own model name, as providers spell them (gpt-4o-2024-08-06, models/gemini-pro, llama3.1:8b).
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,119}")


def _model_ids(value: str) -> list[str]:
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


class KeySettingsForm(forms.Form):
    """How one AURA key treats its calls."""

    compression = forms.ChoiceField(label=_("Prompt compression"), choices=COMPRESSION_LEVELS, widget=forms.RadioSelect)
    cache_enabled = forms.BooleanField(
        label=_("Answer repeated requests from the private response cache"),
        required=False,
        help_text=_("Encrypted so that only the exact same request can read the answer back. Per request: x-aura-cache: on|off|refresh."),
    )
    cache_ttl = forms.IntegerField(label=_("Cache lifetime (seconds)"), min_value=1, max_value=30 * 24 * 3600)
    routing_policy = forms.ChoiceField(label=_("Routing policy for model “auto”"), choices=ROUTING_POLICIES, widget=forms.RadioSelect)
    reference_model = forms.ChoiceField(label=_("Reference model"), help_text=_("What savings of “auto” calls are measured against."))
    allowed_models = forms.CharField(
        label=_("Allowed models (optional)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Comma-separated model ids this key may use; empty allows every model."),
    )
    fallback_models = forms.CharField(
        label=_("Fallback models (optional)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Comma-separated, in order. Used when the chosen model's provider is rate limiting, failing or cooling down."),
    )

    rpm_limit = forms.IntegerField(label=_("Requests per minute (optional)"), required=False, min_value=1, max_value=10**9)
    tpm_limit = forms.IntegerField(label=_("Tokens per minute (optional)"), required=False, min_value=1, max_value=10**12)

    def __init__(self, *args, plan=None, **kwargs):
        super().__init__(*args, **kwargs)
        if plan is not None:
            self.fields["rpm_limit"].help_text = _(
                "A lower limit for this key alone. Empty: your plan's %(limit)s requests a minute for the whole account."
            ) % {"limit": number_format(plan.requests_per_minute, force_grouping=True)}
            self.fields["tpm_limit"].help_text = _(
                "A lower limit for this key alone, prompt and completion tokens together. Empty: your plan's %(limit)s."
            ) % {"limit": number_format(plan.tokens_per_minute, force_grouping=True)}
        chat_models = sorted(m.id for m in catalog.load().models.values() if m.supports("chat"))
        self.fields["reference_model"].choices = [(m, m) for m in chat_models]

    def _known(self, field: str) -> list[str]:
        """Catalog ids, or ``provider/model`` for a model the catalog does not list and ``label/model`` for a
        custom server's (as chat names them); a listed model named with its provider is kept under its
        catalog id, the one calls are checked by."""
        known = catalog.load().models
        ids, unknown = [], []
        for name in _model_ids(self.cleaned_data.get(field, "")):
            provider, slash, model = name.partition("/")
            if name in known:
                ids.append(name)
            elif slash and (provider in PROVIDERS or _LABEL.fullmatch(provider)) and _MODEL_NAME.fullmatch(model):
                listed = known.get(model)
                ids.append(model if listed and listed.provider == provider else name)
            else:
                unknown.append(name)
        if unknown:
            raise forms.ValidationError(_("Unknown model ids: %(ids)s") % {"ids": ", ".join(unknown)})
        return list(dict.fromkeys(ids))

    def clean_allowed_models(self):
        return self._known("allowed_models")

    def clean_fallback_models(self):
        fallbacks = self._known("fallback_models")
        if len(fallbacks) > routing.MAX_FALLBACKS:
            raise forms.ValidationError(_("At most %(count)s fallback models.") % {"count": routing.MAX_FALLBACKS})
        return fallbacks

    def clean(self):
        cleaned = super().clean()
        allowed, fallbacks = cleaned.get("allowed_models"), cleaned.get("fallback_models")
        if allowed and fallbacks:
            refused = [name for name in fallbacks if name not in allowed and name.split("/", 1)[-1] not in allowed]
            if refused:
                message = _("Not among the allowed models: %(ids)s. Allow them too, or leave them out.")
                self.add_error("fallback_models", message % {"ids": ", ".join(refused)})
        return cleaned
