import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from billing import signatures

SECRET = "pdl_ntfset_test_secret_0123456789"
# The same ids the Makefile gives every test process, the Celery worker included.
PRICE_PRO, PRICE_TEAM = "pri_01pro000000000000000000000", "pri_01team00000000000000000000"


@pytest.fixture(autouse=True)
def paddle_settings(settings):
    settings.PADDLE_WEBHOOK_SECRET = SECRET
    settings.PADDLE_PRICE_PRO = PRICE_PRO
    settings.PADDLE_PRICE_TEAM = PRICE_TEAM
    settings.PADDLE_API_KEY = "pdl_sdbx_apikey_test"
    settings.PADDLE_CLIENT_TOKEN = "test_client_token"
    return settings


def event(event_type, data, *, occurred_at="2026-11-20T10:00:00.000000Z", event_id=None):
    return {
        "event_id": event_id or f"evt_{abs(hash((event_type, occurred_at, json.dumps(data, sort_keys=True)))):026d}"[:30],
        "event_type": event_type,
        "occurred_at": occurred_at,
        "notification_id": "ntf_01test",
        "data": data,
    }


def checkout_data(account_id) -> dict:
    """The customData billing.js passes to Paddle.js: the account id and the page's signature of it."""
    return {"aura_account_id": str(account_id), "aura_account_signature": signatures.account_sign(account_id)}


def subscription_data(
    user, *, status="active", price=PRICE_PRO, sub_id="sub_01hv8x29kz0t586xy6zn1a62ny", customer="ctm_01hv6y1jedq4p1n0yqn5ba3ky4", **extra
):
    return {
        "id": sub_id,
        "status": status,
        "customer_id": customer,
        "custom_data": checkout_data(user.pk),
        "items": [{"status": "active", "quantity": 1, "price": {"id": price, "product_id": "pro_01aura"}}],
        "current_billing_period": {"starts_at": "2026-11-20T10:00:00Z", "ends_at": "2026-12-20T10:00:00Z"},
        "next_billed_at": "2026-12-20T10:00:00Z",
        "scheduled_change": None,
        "canceled_at": None,
        **extra,
    }


def signed(body: bytes, *, secret=SECRET, ts=None) -> str:
    ts = int(time.time()) if ts is None else ts
    return f"ts={ts};h1={signatures.sign(body, secret, ts)}"


@pytest.fixture
def deliver(client):
    def send(payload, header=None, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"HTTP_PADDLE_SIGNATURE": header if header is not None else signed(body)}
        return client.post("/billing/paddle/webhook/", data=body, content_type="application/json", **headers)

    return send


class PaddleAPI:
    """A local stand-in for Paddle's API: real HTTP, response shapes as Paddle documents them."""

    def __init__(self):
        self.calls = []
        self.fail = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                api.calls.append({"method": self.command, "path": self.path, "json": body, "auth": self.headers.get("Authorization")})
                if api.fail:
                    status = api.fail.pop(0)
                    payload = {
                        "error": {"type": "request_error", "code": "internal_error" if status >= 500 else "forbidden", "detail": "x"}
                    }
                else:
                    status, payload = 200, {"data": api.data_for(self.command, self.path), "meta": {"request_id": "req_test"}}
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PATCH = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def data_for(method, path):
        if path.endswith("/update-payment-method-transaction"):
            return {"id": "txn_01hv8wptq8987qeep44cyrewp9", "status": "ready", "checkout": {"url": "https://aura.example/pay?_ptxn=txn_01"}}
        if path.endswith("/portal-sessions"):
            return {
                "id": "cpls_01h4ge9r64c22exjsx0fy8b48b",
                "customer_id": path.split("/")[2],
                "urls": {
                    "general": {"overview": "https://customer-portal.paddle.com/cpl_01?action=overview&token=pga_x"},
                    "subscriptions": [],
                },
            }
        if path.endswith("/invoice"):
            return {"url": "https://paddle-sandbox-invoice-service-pdfs.s3.amazonaws.com/invoice.pdf"}
        if path.endswith("/cancel"):
            return {
                "id": path.split("/")[2],
                "status": "active",
                "scheduled_change": {"action": "cancel", "effective_at": "2026-12-20T10:00:00Z"},
            }
        return {"id": path.split("/")[2], "status": "active"}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def paddle_api(settings):
    api = PaddleAPI()
    settings.PADDLE_API_URL = api.url
    yield api
    api.stop()
