"""The plans AURA sells, defined in one place. Paid plans arrive with Paddle billing."""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    monthly_requests: int
    requests_per_minute: int
    api_keys: int


FREE = Plan(code="free", name=_("Free"), monthly_requests=10_000, requests_per_minute=60, api_keys=3)
PLANS = {plan.code: plan for plan in [FREE]}


def plan_for(user) -> Plan:
    """The plan whose limits apply to ``user``: Free until a paid subscription exists."""
    return FREE
