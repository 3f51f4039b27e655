import hashlib
import json
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from metrics.selectors import month_totals

from . import paddle, services, signatures
from .models import Subscription, Transaction
from .plans import FEATURES, PLANS
from .selectors import current_plan
from .tasks import process_webhook_event_task

log = logging.getLogger(__name__)


def _paddle_context(request) -> dict:
    """What the checkout script needs; the account id travels as customData with its signature, and only
    a valid signature makes the webhook trust it (services._user_for)."""
    account = request.user.pk if request.user.is_authenticated else None
    return {
        "paddle": {
            "token": settings.PADDLE_CLIENT_TOKEN,
            "environment": settings.PADDLE_ENVIRONMENT,
            "email": request.user.email if request.user.is_authenticated else "",
            "account": account,
            "account_signature": signatures.account_sign(account) if account else None,
            "success_url": settings.SITE_URL + "/billing/?checkout=done",
        }
    }


def pricing(request):
    context = {
        "plans": PLANS.values(),
        "feature_names": FEATURES,
        "current": current_plan(request.user.pk).code if request.user.is_authenticated else None,
    }
    return render(request, "billing/pricing.html", {**context, **_paddle_context(request)})


def _get_subscription_for_user(request) -> Subscription:
    subscription = Subscription.objects.filter(user=request.user).first()
    if subscription is None:
        raise Http404
    return subscription


@login_required
def billing_page(request):
    plan = current_plan(request.user.pk)
    subscription = Subscription.objects.filter(user=request.user).first()
    month = month_totals(request.user.pk)
    context = {
        "plan": plan,
        "plans": PLANS.values(),
        "subscription": subscription,
        "requests_used": month["client_requests"],  # as the gateway counts the quota: failed fallback attempts are not requests
        "requests_percent": min(100, round(100 * month["client_requests"] / plan.monthly_requests)) if plan.monthly_requests else 0,
        "transactions": Transaction.objects.filter(user=request.user)[:24],
        "checkout_done": request.GET.get("checkout") == "done",
        **_paddle_context(request),
    }
    return render(request, "billing/billing.html", context)


def _paddle_action(request, action, success: str):
    try:
        action()
    except paddle.PaddleError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, success)
    return redirect("billing")


@login_required
@require_POST
def cancel(request):
    subscription = _get_subscription_for_user(request)
    return _paddle_action(
        request,
        lambda: services.subscription_cancel(subscription=subscription),
        _("Your subscription will end at the close of the current period. You keep your plan until then."),
    )


@login_required
@require_POST
def keep(request):
    subscription = _get_subscription_for_user(request)
    return _paddle_action(
        request, lambda: services.subscription_keep(subscription=subscription), _("Your subscription will renew as before.")
    )


@login_required
@require_POST
def change_plan(request):
    subscription = _get_subscription_for_user(request)
    code = request.POST.get("plan", "")
    if code not in PLANS or code == "free":
        messages.error(request, _("Choose a paid plan, or cancel to return to Free."))
        return redirect("billing")
    if code == subscription.plan:
        messages.info(request, _("You are on the %(plan)s plan already.") % {"plan": PLANS[code].name})
        return redirect("billing")
    return _paddle_action(
        request,
        lambda: services.subscription_change_plan(subscription=subscription, plan_code=code),
        _("Your plan change is on its way; this page updates as soon as Paddle confirms it."),
    )


@login_required
@require_POST
def payment_method(request):
    """A transaction for Paddle.js to open, in which the customer enters new payment details."""
    subscription = _get_subscription_for_user(request)
    try:
        txn = paddle.update_payment_method_transaction(subscription.paddle_subscription_id)
    except paddle.PaddleError as error:
        return JsonResponse({"error": str(error)}, status=502)
    return JsonResponse({"transaction_id": txn.get("id")})


@login_required
@require_POST
def portal(request):
    """A fresh customer portal session each time: its links sign the customer in."""
    subscription = _get_subscription_for_user(request)
    try:
        session = paddle.portal_session(subscription.paddle_customer_id, [subscription.paddle_subscription_id])
    except paddle.PaddleError as error:
        messages.error(request, str(error))
        return redirect("billing")
    url = ((session.get("urls") or {}).get("general") or {}).get("overview")
    if not url:
        messages.error(request, _("Paddle did not return a portal link. Try again in a minute."))
        return redirect("billing")
    return redirect(url)


@login_required
def invoice(request, transaction_id):
    row = Transaction.objects.filter(user=request.user, paddle_transaction_id=transaction_id).first()
    if row is None:
        raise Http404
    try:
        url = paddle.invoice_url(row.paddle_transaction_id)
    except paddle.PaddleError as error:
        messages.error(request, str(error))
        return redirect("billing")
    return redirect(url)


@csrf_exempt
@require_POST
def webhook(request):
    """Verify, store, acknowledge; the work happens in a Celery task."""
    body = request.body
    secrets = [s.strip() for s in settings.PADDLE_WEBHOOK_SECRET.split(",") if s.strip()]
    try:
        signatures.verify(request.headers.get("Paddle-Signature"), body, secrets, tolerance=settings.PADDLE_WEBHOOK_TOLERANCE_SECONDS)
    except signatures.SignatureError as error:
        log.warning("Paddle webhook refused: %s", error)
        return HttpResponse(status=400 if "malformed" in str(error) or "missing" in str(error) else 403)
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    event, _created = services.event_receive(payload=payload, body_digest=hashlib.sha256(body).hexdigest())
    if event.status == event.RECEIVED:  # new, or delivered again before it could be applied: apply it now
        process_webhook_event_task.delay_on_commit(event.pk)
    return HttpResponse(status=200)
