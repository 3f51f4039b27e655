"""The cabinet's API keys and Provider keys pages."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from aura import cache
from billing.selectors import current_plan

from . import services
from .forms import ApiKeyForm, KeySettingsForm, ProviderKeyForm, ReplaceKeyForm
from .models import ApiKey, ProviderKey


def _get_api_key_for_user(request, pk) -> ApiKey:
    return get_object_or_404(ApiKey, pk=pk, user=request.user)


def _get_provider_key_for_user(request, pk) -> ProviderKey:
    return get_object_or_404(ProviderKey, pk=pk, user=request.user)


def _check_message(request, key, status):
    if status == "ok":
        messages.success(
            request,
            _("The %(provider)s key ending in %(last4)s is saved and the provider accepted it.")
            % {"provider": key.get_provider_display(), "last4": key.last4},
        )
    elif status == "rejected":
        messages.error(
            request,
            _("The %(provider)s key ending in %(last4)s is saved, but the provider rejected it. Check it and replace it.")
            % {"provider": key.get_provider_display(), "last4": key.last4},
        )
    else:
        messages.warning(
            request,
            _("The %(provider)s key ending in %(last4)s is saved but was not checked: the provider could not be reached.")
            % {"provider": key.get_provider_display(), "last4": key.last4},
        )


@login_required
def api_keys(request):
    form = ApiKeyForm(request.POST if request.method == "POST" else None, initial={"once": uuid.uuid4()})
    new_secret = None
    if request.method == "POST" and form.is_valid():
        if not cache.add(f"gw:key-form:{request.user.pk}:{form.cleaned_data['once']}", 1, 24 * 3600):
            messages.info(request, _("That key was already issued and shown once. Issue a new one if you did not copy it."))
            return redirect("api_keys")
        try:
            _key, new_secret = services.api_key_issue(user=request.user, name=form.cleaned_data["name"])
        except services.KeyLimitReached as error:
            cache.delete(f"gw:key-form:{request.user.pk}:{form.cleaned_data['once']}")  # nothing was issued
            form.add_error(None, str(error))
        else:
            form = ApiKeyForm(initial={"once": uuid.uuid4()})
    keys = request.user.api_keys.all()
    response = render(request, "gateway/api_keys.html", {"form": form, "keys": keys, "new_secret": new_secret})
    # The secret is on this page once: keep it out of every cache and of the browser's history.
    response["Cache-Control"] = "no-store"
    return response


@login_required
def api_key_settings(request, pk):
    key = _get_api_key_for_user(request, pk)
    initial = {name: getattr(key, name) for name in ApiKey.SETTINGS}
    initial["allowed_models"] = ", ".join(key.allowed_models)
    initial["fallback_models"] = ", ".join(key.fallback_models)
    form = KeySettingsForm(request.POST if request.method == "POST" else None, initial=initial, plan=current_plan(request.user.pk))
    if request.method == "POST" and form.is_valid():
        services.api_key_configure(key=key, **{name: form.cleaned_data[name] for name in ApiKey.SETTINGS})
        messages.success(request, _("Settings of “%(name)s” are saved. They apply to the next call.") % {"name": key.name})
        return redirect("api_key_settings", pk=key.pk)
    return render(request, "gateway/api_key_settings.html", {"form": form, "key": key})


@login_required
@require_POST
def api_key_revoke(request, pk):
    key = _get_api_key_for_user(request, pk)
    services.api_key_revoke(key=key)
    messages.success(request, _("The key “%(name)s” is revoked. Calls with it are refused from now on.") % {"name": key.name})
    return redirect("api_keys")


@login_required
def provider_keys(request):
    form = ProviderKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if ProviderKey.objects.filter(user=request.user, provider=data["provider"], label=data["label"]).exists():
            if data["label"]:
                message = _("You already have a key for this provider with this label. Replace it, or give the new one another label.")
            else:
                message = _("You already have a key for this provider without a label. Replace it, or give the new one a label.")
            form.add_error(None, message)
        else:
            try:
                key = services.provider_key_save(user=request.user, **data)
            except services.ProviderKeyError as error:
                form.add_error(error.field if error.field in form.fields else None, str(error))
            else:
                _check_message(request, key, services.provider_key_check(key=key))
                return redirect("provider_keys")
    keys = list(request.user.provider_keys.all())
    added_last_first = sorted(keys, key=lambda k: k.created, reverse=True)
    for key in keys:
        key.serves_unlabelled = services.default_key(added_last_first, key.provider) is key
    return render(request, "gateway/provider_keys.html", {"form": form, "keys": keys})


@login_required
def provider_key_replace(request, pk):
    key = _get_provider_key_for_user(request, pk)
    form = ReplaceKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            services.provider_key_save(
                user=request.user,
                provider=key.provider,
                api_key=form.cleaned_data["api_key"],
                base_url=key.base_url,
                label=key.label,
                instance=key,
            )
        except services.ProviderKeyError as error:
            form.add_error("api_key", str(error))
        else:
            _check_message(request, key, services.provider_key_check(key=key))
            return redirect("provider_keys")
    return render(request, "gateway/provider_key_replace.html", {"form": form, "key": key})


@login_required
@require_POST
def provider_key_delete(request, pk):
    key = _get_provider_key_for_user(request, pk)
    services.provider_key_delete(key=key)
    messages.success(request, _("The %(provider)s key is deleted.") % {"provider": key.get_provider_display()})
    return redirect("provider_keys")
