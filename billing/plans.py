"""The plans AURA sells, defined in one place. Paddle price ids come from the environment."""

from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext_lazy as _

FEATURES = {
    "response_cache": _("Private response cache"),
    "routing": _("Automatic routing (model “auto”)"),
    "aggressive_compression": _("Aggressive compression"),
}


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    monthly_price_usd: int
    monthly_requests: int
    requests_per_minute: int
    api_keys: int
    tokens_per_minute: int = 200_000  # prompt + completion tokens, OpenAI's TPM
    concurrent_requests: int = 20  # calls in flight at once, so one account cannot hold every web worker
    features: frozenset = frozenset()
    price_setting: str = ""  # the settings name holding this plan's Paddle price id

    @property
    def paddle_price_id(self) -> str:
        return getattr(settings, self.price_setting, "") if self.price_setting else ""

    def includes(self, feature: str) -> bool:
        return feature in self.features


# Every plan has every savings feature: a free account should see what AURA saves it.
# Plans differ in volume (quotas, rate, keys); features stay per plan so that can change.
FREE = Plan("free", _("Free"), 0, monthly_requests=10_000, requests_per_minute=60, api_keys=3, features=frozenset(FEATURES))
PRO = Plan(
    "pro",
    _("Pro"),
    29,
    monthly_requests=500_000,
    requests_per_minute=600,
    api_keys=20,
    tokens_per_minute=2_000_000,
    concurrent_requests=100,
    features=frozenset(FEATURES),
    price_setting="PADDLE_PRICE_PRO",
)
TEAM = Plan(
    "team",
    _("Team"),
    99,
    monthly_requests=5_000_000,
    requests_per_minute=3000,
    api_keys=100,
    tokens_per_minute=10_000_000,
    concurrent_requests=500,
    features=frozenset(FEATURES),
    price_setting="PADDLE_PRICE_TEAM",
)
PLANS = {plan.code: plan for plan in (FREE, PRO, TEAM)}


def plan_for_price(price_id: str) -> Plan | None:
    return next((p for p in PLANS.values() if price_id and p.paddle_price_id == price_id), None)


def plan_for(user) -> Plan:
    """The plan whose limits apply to ``user`` now (read from the database, never from Paddle)."""
    from .selectors import current_plan

    return current_plan(user.pk)
