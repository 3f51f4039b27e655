"""What the rest of AURA may ask billing: the plan in force. Read from the database and the shared cache, never from Paddle."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from aura import cache

from .models import Subscription
from .plans import FREE, PLANS, Plan

PLAN_CACHE_SECONDS = 300


def plan_cache_key(user_id: int) -> str:
    return f"billing:plan:{user_id}"


def forget_plan(user_id: int) -> None:
    cache.delete(plan_cache_key(user_id))


def plan_from(subscription: Subscription | None, now=None) -> Plan:
    if subscription is None:
        return FREE
    now = now or timezone.now()
    if subscription.status in ("active", "trialing"):
        return PLANS.get(subscription.plan, FREE)
    if subscription.status == "past_due":
        since = subscription.past_due_since or now
        if now - since <= timedelta(days=settings.BILLING_PAST_DUE_GRACE_DAYS):
            return PLANS.get(subscription.plan, FREE)
    return FREE


def current_plan(user_id: int, cached: str | None = None) -> Plan:
    """The plan in force; ``cached`` is the cache entry when the caller already fetched it."""
    code = cached if cached is not None else cache.get(plan_cache_key(user_id))
    if code is None:
        plan = plan_from(Subscription.objects.filter(user_id=user_id).first())
        # Cached briefly: a grace period that runs out is noticed within minutes.
        cache.set(plan_cache_key(user_id), plan.code, PLAN_CACHE_SECONDS)
        return plan
    return PLANS.get(code, FREE)
