"""Billing's part of a GDPR export."""

from accounts.exports import as_csv, as_json


def collect(user) -> dict:
    subscription = user.subscription if hasattr(user, "subscription") else None
    sub = None
    if subscription is not None:
        sub = {
            k: getattr(subscription, k)
            for k in (
                "paddle_subscription_id",
                "status",
                "plan",
                "current_period_start",
                "current_period_end",
                "next_billed_at",
                "scheduled_change",
                "canceled_at",
            )
        }
    rows = list(
        user.transactions.values(
            "paddle_transaction_id",
            "status",
            "origin",
            "currency",
            "total",
            "invoice_number",
            "billed_at",
            "adjustment",
            "adjustment_status",
        )
    )
    return {
        "subscription.json": ("your subscription as Paddle last reported it", as_json(sub)),
        "transactions.csv": (
            "your payments, refunds and chargebacks",
            as_csv(rows, list(rows[0]) if rows else ["paddle_transaction_id", "status", "total"]),
        ),
    }
