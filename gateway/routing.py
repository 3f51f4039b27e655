"""Routing: which model, provider and key serve a call, and where to go when one fails.

- An explicit model is honoured exactly (a key's allow-list may refuse it); the
  key's ordered fallbacks follow it.
- ``model: "auto"`` picks, among the models the account has keys for, the
  cheapest one that meets the request's needs (context, tools, vision, JSON)
  and its estimated difficulty; ``balanced`` also weighs each provider's
  observed latency and error rate, ``quality`` prefers the strongest tier.
- A conversation sticks to one route, so provider prompt caches stay warm.
- A provider that keeps failing is put in cooldown: a circuit breaker whose
  state lives in the shared cache, so every web node sees it.

Health statistics are aggregates per provider with no link to any account.
"""

import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from aura import cache

from . import catalog, errors
from .providers import PROVIDERS

log = logging.getLogger(__name__)

AUTO_NAMES = {"auto", "aura/auto"}
BREAKER_THRESHOLD = 5  # consecutive failures that open the breaker
BREAKER_WINDOW = 60  # seconds a failure streak is remembered
BREAKER_COOLDOWN = 30  # seconds a provider sits out
MAX_FALLBACKS = 5  # per AURA key: one call makes at most 1 + 5 upstream attempts, and a retry of the last
STICKY_SECONDS = 3600

# A prompt's difficulty: one point each for code, mathematics and asks for reasoning, as these three
# expressions find them. Their word boundaries and IGNORECASE make the engine try them at every
# position of the text (29 ms of CPU for 100 KB of prose); ``_difficulty`` finds the same with each
# alternative on its own, led by a literal the engine looks for at memchr speed, the
# case-insensitive ones in the lower-cased text, and the boundaries checked around each match.
_CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|\breturn\b|#include|=>|;\s*$|\bSELECT\b", re.M)
_MATH = re.compile(r"\d\s*[-+*/^=]\s*\d|\\(frac|int|sum|sqrt)|\b(integral|derivative|equation|prove|theorem|probability)\b", re.I)
_REASONING = re.compile(r"\b(step by step|explain why|analy[sz]e|compare|trade-?offs?|plan|design|debug|why does|reason)\b", re.I)


@dataclass(frozen=True)
class _Part:
    pattern: re.Pattern
    before: bool = False  # a word boundary (\b) must precede it
    after: bool = False  # and follow it


def _parts(*patterns: str, flags: int = 0, before: bool = False, after: bool = False) -> tuple:
    return tuple(_Part(re.compile(pattern, flags), before, after) for pattern in patterns)


def _words(*patterns: str) -> tuple:
    return _parts(*patterns, before=True, after=True)


_CODE_PARTS = (
    *_parts("```", "#include", "=>", r";\s*$", flags=re.M),
    *_parts("def ", "class ", before=True),
    *_words("function", "return", "SELECT"),
)
_MATH_DIGITS = _parts(r"\d\s*[-+*/^=]\s*\d")
_MATH_LOWER = (*_parts(r"\\(?:frac|int|sum|sqrt)"), *_words("integral", "derivative", "equation", "prove", "theorem", "probability"))
_REASONING_LOWER = _words(
    "step by step", "explain why", "analy[sz]e", "compare", "trade-?offs?", "plan", "design", "debug", "why does", "reason"
)
# The characters whose case IGNORECASE folds differently from str.lower() (İ lowers to two
# characters; ı and ſ match i and s): a text holding one is judged by the expressions themselves.
_FOLDS_APART = ("\u0130", "\u0131", "\u017f")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"  # \w, for str patterns


def _found(text: str, parts: tuple) -> bool:
    end_of_text = len(text)
    for part in parts:
        search = part.pattern.search
        match = search(text)
        while match:
            start, end = match.span()
            if (not part.before or start == 0 or not _is_word(text[start - 1])) and (
                not part.after or end == end_of_text or not _is_word(text[end])
            ):
                return True
            match = search(text, start + 1)  # overlapping: "step by step" may start inside a refused one
    return False


def _difficulty(text: str) -> int:
    """How many of ``_CODE``, ``_MATH`` and ``_REASONING`` find something in ``text``."""
    if any(char in text for char in _FOLDS_APART):
        return sum(bool(pattern.search(text)) for pattern in (_CODE, _MATH, _REASONING))
    lower = text.lower()
    return _found(text, _CODE_PARTS) + (_found(text, _MATH_DIGITS) or _found(lower, _MATH_LOWER)) + _found(lower, _REASONING_LOWER)


@dataclass(frozen=True)
class Needs:
    prompt_tokens: int
    output_tokens: int
    tools: bool
    vision: bool
    json: bool
    difficulty: int  # 0 trivial .. 3 hard (0 when not judged: ``needs_of``)


@dataclass(frozen=True)
class Choice:
    model: catalog.Model
    key: object  # services.SealedKey
    reason: str


def needs_of(body: dict, prompt_tokens: int, *, judge: bool = True) -> Needs:
    """What a call needs of a model. Its difficulty (read from its text) matters only to automatic
    routing: with ``judge`` false (a model named explicitly) it is not read, and is 0."""
    text_parts, vision = [], False
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, str):
            text_parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    text_parts.append(part.get("text") or "")
                elif part.get("type") == "image_url":
                    vision = True
    difficulty = 0
    if judge:
        text = "\n".join(text_parts)
        difficulty = _difficulty(text) + (prompt_tokens > 4000)
    fmt = (body.get("response_format") or {}).get("type")
    return Needs(
        prompt_tokens=prompt_tokens,
        output_tokens=body.get("max_completion_tokens") or body.get("max_tokens") or 512,
        tools=bool(body.get("tools")),
        vision=vision,
        json=fmt in ("json_object", "json_schema"),
        difficulty=min(difficulty, 3),
    )


def capable(model: catalog.Model, needs: Needs) -> bool:
    if not model.supports("chat"):
        return False
    if model.context_window and needs.prompt_tokens + needs.output_tokens > model.context_window:
        return False
    return all(
        model.supports(capability)
        for capability, wanted in (("tools", needs.tools), ("vision", needs.vision), ("json", needs.json))
        if wanted
    )


def estimated_cost(model: catalog.Model, needs: Needs) -> float:
    prices = model.prices.for_prompt(needs.prompt_tokens)
    return float(prices.input) * needs.prompt_tokens + float(prices.output) * needs.output_tokens


def _min_tier(needs: Needs) -> int:
    return 1 if needs.difficulty == 0 else 2 if needs.difficulty <= 2 else 3


# provider health: anonymous aggregates in the shared cache ------------------------------------


def host(key) -> str:
    return f"{key.provider}:{urlsplit(key.base_url).netloc or 'default'}"


def breaker_names(keys) -> tuple[str, ...]:
    """The cache keys holding the breakers of these provider keys' hosts."""
    return tuple(f"gw:cb:{part}:{name}" for name in sorted({host(key) for key in keys}) for part in ("open", "fails"))


def breakers(keys, found: dict | None = None) -> dict[str, int]:
    """Each route's breaker: -1 when its provider is cooling down, else its failure streak.

    ``found`` holds the entries of ``breaker_names`` when the caller already read them;
    otherwise they are read here, in one round trip.
    """
    if found is None:
        found = cache.get_many(list(breaker_names(keys)))
    names = {host(key) for key in keys}
    return {name: -1 if found.get(f"gw:cb:open:{name}") else int(found.get(f"gw:cb:fails:{name}") or 0) for name in names}


def record_outcome(key, *, ok: bool, latency_ms: int | None = None, analytics: bool = True, streak: int = 1) -> None:
    """``streak`` is the failure streak ``breakers`` saw: a success clears it only when there was one.

    Only failures of the host count (5xx, timeouts, no connection): a 429 is about one account's
    key (its rate limit, its credit), and must not cool the provider down, or skew its health, for
    every other account.
    """
    name = host(key)
    if ok:
        if streak:
            cache.delete(f"gw:cb:fails:{name}")
    elif (cache.incr(f"gw:cb:fails:{name}", BREAKER_WINDOW) or 0) >= BREAKER_THRESHOLD:
        cache.set(f"gw:cb:open:{name}", 1, BREAKER_COOLDOWN)
        log.warning("provider %s put in cooldown for %ss", key.provider, BREAKER_COOLDOWN)
    if analytics:  # accounts that restricted processing or objected are left out of the shared statistics
        _update_health(key.provider, ok, latency_ms)


# Each node keeps its own moving averages and publishes them at most once a second per
# provider; the last writer wins, which is fine for a smoothed estimate.
HEALTH_PUBLISH_SECONDS = 1.0
_health: dict[str, dict] = {}
_published: dict[str, float] = {}


def _update_health(provider: str, ok: bool, latency_ms: int | None) -> None:
    stats = _health.get(provider)
    if stats is None:
        stats = _health[provider] = dict(cache.get(f"gw:health:{provider}") or {"latency": 1000.0, "errors": 0.0})
    if latency_ms is not None:
        stats["latency"] = 0.9 * stats["latency"] + 0.1 * latency_ms
    stats["errors"] = 0.95 * stats["errors"] + 0.05 * (0.0 if ok else 1.0)
    now = time.monotonic()
    if not ok or now - _published.get(provider, -math.inf) >= HEALTH_PUBLISH_SECONDS:
        _published[provider] = now
        cache.set(f"gw:health:{provider}", dict(stats), 24 * 3600)


def health_reset() -> None:
    """Forget this node's statistics (tests)."""
    _health.clear()
    _published.clear()


def health(provider: str) -> dict:
    """Live statistics when this deployment has them; else the last week of anonymised daily aggregates."""
    live = cache.get(f"gw:health:{provider}")
    if live:
        return live
    learned = cache.get(f"gw:health-learned:{provider}")
    if learned is None:
        learned = _from_aggregates(provider)
        cache.set(f"gw:health-learned:{provider}", learned, 600)
    return learned


def _from_aggregates(provider: str) -> dict:
    from datetime import timedelta

    from django.db.models import Sum
    from django.utils import timezone

    from metrics.models import AnonymousAggregate

    since = (timezone.now() - timedelta(days=7)).date()
    totals = AnonymousAggregate.objects.filter(provider=provider, day__gte=since).aggregate(
        requests=Sum("requests"), errors=Sum("errors"), latency=Sum("latency_ms_total")
    )
    if not totals["requests"]:
        return {"latency": 1000.0, "errors": 0.0}
    return {"latency": totals["latency"] / totals["requests"], "errors": totals["errors"] / totals["requests"]}


# choosing ------------------------------------------------------------------------------


def conversation_id(tenant: int, body: dict) -> str:
    """Stable across a conversation's calls: its system prompt and first user turn."""
    messages = body.get("messages") or []
    head = [m for m in messages if m.get("role") in ("system", "developer")][:2]
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    material = json.dumps([tenant, head, first_user], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _keyed(vault, provider: str):
    return vault.default_key(provider) if vault else None


def allowed(caller, *names: str) -> bool:
    """Whether the key may call the model by any of its names, its catalog id or the name it was asked
    by (a custom server's model is listed as label/model); a key with no list may call every model."""
    return not caller.allowed_models or any(name in caller.allowed_models for name in names)


def auto_ranked(caller, vault, needs: Needs) -> list[catalog.Model]:
    providers = {k.provider for k in vault.keys} if vault else set()
    pool = [m for m in catalog.load().models.values() if m.provider in providers and allowed(caller, m.id) and capable(m, needs)]
    if not pool:
        return []
    floor = _min_tier(needs)
    if caller.routing_policy == "quality":
        return sorted(pool, key=lambda m: (-m.tier, estimated_cost(m, needs), m.id))
    strong_enough = [m for m in pool if m.tier >= floor] or pool
    if caller.routing_policy == "balanced":

        def score(m):
            stats = health(m.provider)
            return estimated_cost(m, needs) * (1 + stats["latency"] / 2000) * (1 + 5 * stats["errors"]), m.id

        return sorted(strong_enough, key=score)
    return sorted(strong_enough, key=lambda m: (estimated_cost(m, needs), m.id))


def plan(caller, vault, name: str, needs: Needs, conversation: str, resolve) -> list[Choice]:
    """The ordered routes to try: the primary first, then fallbacks. ``resolve`` maps a name to (model, key)."""
    choices: list[Choice] = []
    if name in AUTO_NAMES:
        sticky_key = f"gw:sticky:{caller.user_id}:{conversation}"
        sticky = cache.get(sticky_key)
        ranked = auto_ranked(caller, vault, needs)
        if not ranked:
            raise errors.invalid_request(
                "No model available to this key can serve this request (check your provider keys, the key's allowed models, "
                "and the request's needs: context length, tools, images, JSON).",
                "model",
                "no_capable_model",
            )
        pinned = catalog.load().models.get(sticky) if sticky else None
        if pinned and _keyed(vault, pinned.provider) and allowed(caller, pinned.id) and capable(pinned, needs):
            # The conversation keeps its model while that model can still serve it (its cache is warm there).
            ranked = [pinned] + [m for m in ranked if m.id != pinned.id]
        else:
            cache.set(sticky_key, ranked[0].id, STICKY_SECONDS)
        reason = {"cost": "auto:cheapest-capable", "balanced": "auto:balanced", "quality": "auto:quality"}[caller.routing_policy]
        choices = [Choice(m, _keyed(vault, m.provider), reason) for m in ranked[:3]]
    else:
        model, key = resolve(name)
        if not allowed(caller, model.id, name):
            shown = (name if "/" in name else model.id)[:120]  # as asked: a custom server's model by its label
            raise errors.ApiError(403, f"This AURA key is not allowed to use '{shown}'.", "permission_error", "model_not_allowed", "model")
        choices = [Choice(model, key, "explicit")]
    for fallback in caller.fallback_models[:MAX_FALLBACKS]:
        if any(c.model.id == fallback for c in choices):
            continue
        try:
            model, key = resolve(fallback)
        except errors.ApiError:
            continue  # a fallback without a key or unknown to the catalog is skipped, not fatal
        if not allowed(caller, model.id, fallback):
            continue  # the key's allow-list holds for fallbacks too
        if capable(model, needs) or not model.listed:
            choices.append(Choice(model, key, "fallback"))
    return choices


def provider_name(choice: Choice) -> str:
    return PROVIDERS[choice.model.provider].name
