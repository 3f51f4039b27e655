"""The Paddle Billing API client: timeouts on every call, retries where they are safe.

It never runs inside a /v1 request: only cabinet views and Celery tasks use it.
"""

import logging

import requests
from django.conf import settings
from django.utils.translation import gettext as _
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)


class PaddleError(Exception):
    """Paddle said no, or could not be reached. The message is safe to show, in the active language."""


class NotConfigured(PaddleError):
    """This AURA has no Paddle API key."""


def _session() -> requests.Session:
    session = requests.Session()
    # GETs and the idempotent POSTs below are retried on 429/5xx with backoff, honouring Retry-After.
    retry = Retry(
        total=3,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "POST", "PATCH"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.trust_env = False
    return session


_client = _session()


def _call(method: str, path: str, json: dict | None = None, params: dict | None = None) -> dict:
    if not settings.PADDLE_API_KEY:
        raise NotConfigured(_("Billing is not configured on this AURA (PADDLE_API_KEY is not set)."))
    try:
        response = _client.request(
            method,
            settings.PADDLE_API_URL + path,
            json=json,
            params=params,
            headers={"Authorization": f"Bearer {settings.PADDLE_API_KEY}", "Content-Type": "application/json"},
            timeout=(5, settings.PADDLE_TIMEOUT),
        )
    except requests.RequestException as error:
        log.warning("Paddle API %s %s unreachable: %s", method, path.split("/")[1], type(error).__name__)
        raise PaddleError(_("Paddle could not be reached. Try again in a minute.")) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", {}).get("code", "")
        except ValueError:
            detail = ""
        log.warning("Paddle API %s %s answered %s %s", method, path.split("/")[1], response.status_code, detail)
        status = f"{response.status_code} {detail}".strip()
        raise PaddleError(_("Paddle refused the request (%(status)s).") % {"status": status})
    return response.json().get("data") or {}


def cancel_subscription(subscription_id: str) -> dict:
    return _call("POST", f"/subscriptions/{subscription_id}/cancel", {"effective_from": "next_billing_period"})


def remove_scheduled_change(subscription_id: str) -> dict:
    """Undo a scheduled cancellation: the subscription renews as before."""
    return _call("PATCH", f"/subscriptions/{subscription_id}", {"scheduled_change": None})


def change_plan(subscription_id: str, price_id: str) -> dict:
    return _call(
        "PATCH",
        f"/subscriptions/{subscription_id}",
        {"items": [{"price_id": price_id, "quantity": 1}], "proration_billing_mode": "prorated_immediately"},
    )


def update_payment_method_transaction(subscription_id: str) -> dict:
    return _call("GET", f"/subscriptions/{subscription_id}/update-payment-method-transaction")


def portal_session(customer_id: str, subscription_ids: list[str]) -> dict:
    return _call("POST", f"/customers/{customer_id}/portal-sessions", {"subscription_ids": subscription_ids})


def invoice_url(transaction_id: str) -> str:
    return _call("GET", f"/transactions/{transaction_id}/invoice").get("url", "")
