"""Settings → Privacy: what AURA keeps, export, restriction and objection, erasure."""

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_ratelimit.decorators import ratelimit

from aura.notices import redirect_with_notice

from . import privacy
from .forms import DeleteAccountForm, PrivacyChoicesForm
from .models import DataExport


def _get_export_for_user(request, pk) -> DataExport:
    return get_object_or_404(DataExport, pk=pk, user=request.user)


@login_required
def privacy_settings(request, delete_form=None, status=200):
    exports = request.user.exports.all()[:5]
    context = {
        "choices_form": PrivacyChoicesForm(
            initial={"restrict": request.user.restricted_at is not None, "object_to_analytics": request.user.objected_at is not None}
        ),
        "delete_form": delete_form or DeleteAccountForm(user=request.user),
        "exports": exports,
        "export_pending": any(e.status == DataExport.PENDING for e in exports),
        "export_days": privacy.EXPORT_DAYS,
        "recovery_days": privacy.RECOVERY_DAYS,
        "now": timezone.now(),
    }
    return render(request, "accounts/privacy.html", context, status=status)


@login_required
@require_POST
def privacy_choices(request):
    form = PrivacyChoicesForm(request.POST)
    if form.is_valid():
        privacy.privacy_choices_set(
            user=request.user, restrict=form.cleaned_data["restrict"], object_to_analytics=form.cleaned_data["object_to_analytics"]
        )
        messages.success(request, _("Your privacy choices are saved."))
    return redirect("privacy_settings")


@login_required
@require_POST
@ratelimit(key="user", rate="5/h", block=True)
def export_request(request):
    try:
        privacy.export_request(user=request.user)
    except privacy.ExportRefused as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("Your export is being prepared. This page shows when it is ready, and we will email you."))
    return redirect("privacy_settings")


@login_required
def export_download(request, pk):
    export = _get_export_for_user(request, pk)
    path = privacy.export_path(export)
    if export.status != DataExport.READY or not path.exists():
        raise Http404
    response = FileResponse(path.open("rb"), as_attachment=True, filename=f"aura-export-{export.created:%Y-%m-%d}.zip")
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@ratelimit(key="user", rate="10/h", block=True)
def delete_account(request):
    form = DeleteAccountForm(request.POST, user=request.user)
    if not form.is_valid():
        return privacy_settings(request, delete_form=form, status=400)
    user = request.user
    privacy.deletion_request(user=user)
    logout(request)
    return render(request, "accounts/deletion_requested.html", {"recovery_days": privacy.RECOVERY_DAYS, "email": user.email})


def cancel_deletion(request, token):
    user = privacy.deletion_cancel_by_token(token=token)
    if user is None:
        return render(
            request,
            "accounts/verify_failed.html",
            {"reason": _("This link is no longer valid: the deletion was already canceled, or the account is gone.")},
            status=400,
        )
    return redirect_with_notice(request, "login", "deletion-canceled")
