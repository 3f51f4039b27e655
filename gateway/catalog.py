"""The model catalog: a dated data file in the repo, loaded once per process."""

import functools
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .providers import PROVIDERS

CATALOG_PATH = Path(__file__).with_name("catalog.json")
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Prices:
    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    # A provider's second tier for long prompts (Gemini's Pro models bill a prompt over 200k tokens,
    # all of it, at higher rates): those rates, and the prompt size past which they apply.
    long: "Prices | None" = None
    long_above: int | None = None

    def for_prompt(self, prompt_tokens: int) -> "Prices":
        """The rates a call with this many prompt tokens is billed at."""
        return self.long if self.long is not None and prompt_tokens > self.long_above else self

    def as_dict(self) -> dict:
        rates = {k: float(getattr(self, k)) for k in ("input", "cached_input", "cache_write", "output")}
        if self.long is not None:
            rates["long_context"] = {"above_prompt_tokens": self.long_above, **self.long.as_dict()}
        return rates


def _prices(entry: dict) -> Prices:
    rates = {k: Decimal(str(v)) for k, v in entry["prices"].items()}
    long = entry.get("long_context")
    if long:
        return Prices(**rates, long=_prices(long), long_above=long["above_prompt_tokens"])
    return Prices(**rates)


FREE = Prices(Decimal(0), Decimal(0), Decimal(0), Decimal(0))


@dataclass(frozen=True)
class Model:
    id: str
    provider: str
    upstream: str
    context_window: int | None
    max_output_tokens: int | None
    capabilities: frozenset[str]
    prices: Prices
    tier: int = 2
    listed: bool = True  # False for names AURA forwards without knowing them (custom servers)

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class Catalog:
    version: str
    models: dict[str, Model]


@functools.cache
def load() -> Catalog:
    data = json.loads(CATALOG_PATH.read_text())
    models = {}
    for entry in data["models"]:
        if entry["provider"] not in PROVIDERS:
            raise ValueError(f"catalog model {entry['id']} names unknown provider {entry['provider']}")
        models[entry["id"]] = Model(
            id=entry["id"],
            provider=entry["provider"],
            upstream=entry["upstream"],
            context_window=entry.get("context_window"),
            max_output_tokens=entry.get("max_output_tokens"),
            capabilities=frozenset(entry["capabilities"]),
            prices=_prices(entry),
            tier=entry.get("tier", 2),
        )
    return Catalog(version=data["version"], models=models)


def unlisted(provider: str, upstream: str, name: str | None = None) -> Model:
    """A model the catalog does not know, named explicitly as ``provider/model`` (or ``name``, a custom
    server's ``label/model``): forwarded, priced at 0."""
    return Model(
        id=name or f"{provider}/{upstream}",
        provider=provider,
        upstream=upstream,
        context_window=None,
        max_output_tokens=None,
        capabilities=frozenset({"chat", "tools", "vision", "json", "embeddings"}),
        prices=FREE,
        listed=False,
    )
