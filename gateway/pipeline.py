"""The /v1 request, stage by stage. Each stage is a small function; views.py reads as the list.

authenticate -> read and validate the body -> route -> forward -> answer -> account.
Prompt and answer text live only in memory here: nothing below logs, stores or
raises with them.
"""

import atexit
import json
import logging
import math
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field
from decimal import Decimal

import gevent
from django.conf import settings
from django.db import connections
from django.utils import timezone
from gevent import monkey as _monkey

from aura import cache
from aura.http import client_ip
from billing.plans import Plan
from billing.selectors import current_plan
from metrics import spool
from metrics.services import usage_record

from . import catalog, compression, errors, limits, response_cache, routing, services, tokenizer, upstream
from . import savings as savings_
from .adapters import ADAPTERS
from .adapters.base import AdapterError, Call, StreamState, Upstream, UpstreamStreamError, Usage, sse
from .errors import ApiError
from .providers import PROVIDERS, Provider
from .vault import VaultError

log = logging.getLogger(__name__)

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass
class Context:
    """What one /v1 call knows about itself. Holds no prompt or answer text."""

    endpoint: str
    request_id: str = field(default_factory=lambda: "req_" + secrets.token_hex(12))
    started: float = field(default_factory=time.perf_counter)
    caller: services.Caller | None = None
    ip: str | None = None
    user_agent: str = ""
    model_requested: str = ""
    route: "Route | None" = None
    stream: bool = False
    tokens_original: int = 0
    tokens_sent: int = 0
    upstream_started: float | None = None
    upstream_seconds: float = 0.0
    ttfb_ms: int | None = None
    cost: Decimal = Decimal(0)
    compression: str = "off"
    cache_status: str = "bypass"
    route_reason: str = "explicit"
    aura_cached: bool = False  # the provider cache hits are AURA's doing (breakpoints it placed)
    baseline_model: catalog.Model | None = None
    savings: savings_.Savings | None = None
    attempt: int = 0
    limit_headers: dict = field(default_factory=dict)
    plan: Plan | None = None  # the caller's plan, read once per call
    vault: services.SealedVault | None = None  # the account's provider keys, sealed, read once per call
    admitted: bool = False  # counted against the limits: finish() must settle it
    tokens_used: int = 0  # prompt + completion tokens the providers processed, for the TPM windows
    breakers: dict | None = None  # the providers' circuit breakers, when admission read them
    spooled: list = field(default_factory=list)  # the fields of usage records finish() encodes and hands to the spool
    conversation: str | None = None  # routing.conversation_id of the body as the client sent it
    last_piece: bool = False  # a stream has yielded its final piece (aura.handlers ends the body with it)
    last_used_due: int | None = None  # the AURA key whose "last used" is due: written once the answer has left

    def overhead_ms(self) -> float:
        return (time.perf_counter() - self.started - self.upstream_seconds) * 1000

    def headers(self) -> dict:
        headers = {"x-request-id": self.request_id, "x-aura-overhead-ms": f"{self.overhead_ms():.2f}", **self.limit_headers}
        if self.route:
            headers.update(
                {
                    "x-aura-model": self.route.model.id,
                    "x-aura-provider": self.route.provider.code,
                    "x-aura-tokens-original": str(self.tokens_original),
                    "x-aura-tokens-sent": str(self.tokens_sent),
                    "x-aura-route-reason": self.route_reason,
                    "x-aura-cache-status": self.cache_status,
                    "x-aura-compression": self.compression,
                }
            )
        if self.savings is not None:
            headers["x-aura-cost-usd"] = f"{self.savings.actual:.8f}"
            headers["x-aura-savings-usd"] = f"{self.savings.total:.8f}"
        return headers


def start(request, endpoint: str) -> Context:
    return Context(endpoint=endpoint, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")[:200])


# authenticate ----------------------------------------------------------------------


def _presented_key(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        secret = request.META.get("HTTP_X_API_KEY", "")
    return secret.strip()


def authenticate(ctx: Context, request, secret: str | None = None) -> services.Caller:
    """Who is calling, with the account's plan and sealed vault: one cache round trip on a warm key."""
    secret = _presented_key(request) if secret is None else secret
    caller, prefetched = services.api_key_admit(secret) if secret else (None, {})
    if caller is None:
        raise errors.invalid_api_key()
    ctx.caller = caller
    ctx.plan = current_plan(caller.user_id, cached=prefetched.get("plan"))
    ctx.vault = services.sealed_vault(caller.user_id, cached=prefetched.get("vault"))
    return caller


# Per account, the breakers its last call's providers have: a warm call reads them with its limits.
_breaker_names: dict[int, tuple[str, ...]] = {}


# Calls presenting a key this node has not learned yet, at the same moment (a burst of streams
# after a deploy): the first learns it while the others wait, then they are admitted in one round
# trip each, instead of each reading the key and its account's entries (and the database, when
# the cache has lost them) for itself.
_learning: dict[str, threading.Event] = {}
LEARN_WAIT_SECONDS = 3.0


def admit(ctx: Context, request) -> services.Caller:
    """Authenticate the key, then count the call against the plan's and the key's limits.

    A key this node has admitted before takes one round trip for both: the limits script counts the
    call only if the key's and the plan's cache entries are still the ones it was admitted under,
    and reads the vault and the providers' circuit breakers as well. Otherwise (a revoked key, a
    changed setting or plan, an expired entry), nothing was counted and the full path runs.
    """
    secret = _presented_key(request)
    known = services.api_key_known(secret) if secret else None
    if known is None and secret and cache.redis() is not None:  # (without Redis nothing is learned to wait for)
        digest = services.key_digest(secret)
        learning = _learning.get(digest)
        if learning is None:
            _learning[digest] = learning = threading.Event()
            try:
                return _admit_fully(ctx, request, secret)
            finally:
                _learning.pop(digest, None)
                learning.set()
        learning.wait(LEARN_WAIT_SECONDS)
        known = services.api_key_known(secret)
    if known is not None:
        caller, plan_code, expect = known
        ctx.caller, ctx.plan = caller, current_plan(caller.user_id, cached=plan_code)
        vault_key = services.vault_cache_key(caller.user_id)
        try:
            ctx.limit_headers, peeked = _enforce(ctx, peek=(vault_key, *_breaker_names.get(caller.user_id, ())), expect=expect)
        except limits.Stale:
            services.api_key_unknown(secret)
        else:
            vault = peeked.pop(vault_key, None)
            ctx.vault = services.sealed_vault(caller.user_id, cached=cache.loads(vault) if vault else None)
            _admitted(ctx, peeked)
            return caller
    return _admit_fully(ctx, request, secret)


def _admit_fully(ctx: Context, request, secret: str) -> services.Caller:
    caller = authenticate(ctx, request, secret)
    keys = ctx.vault.keys if ctx.vault else ()
    # The same round trip reads the circuit breakers of the account's providers. Noted before it:
    # the key is known from now on, and calls that come meanwhile peek at the breakers too.
    ctx.limit_headers, peeked = _enforce(ctx, peek=_note_breakers(caller.user_id, keys))
    _admitted(ctx, peeked)
    return caller


def _enforce(ctx: Context, **options) -> tuple[dict, dict]:
    try:
        found = limits.enforce(ctx.caller, ctx.plan, ctx.request_id, touch=lambda key_id: setattr(ctx, "last_used_due", key_id), **options)
    except ApiError as error:
        ctx.limit_headers = {k: v for k, v in error.headers.items() if k.startswith("x-ratelimit")}
        raise
    ctx.admitted = True  # counted: whatever fails from here on, finish() frees the slot
    return found


def _note_breakers(user_id: int, keys) -> tuple[str, ...]:
    names = routing.breaker_names(keys)
    if len(_breaker_names) >= 100_000:
        _breaker_names.clear()
    _breaker_names[user_id] = names
    return names


def _admitted(ctx: Context, peeked: dict) -> None:
    keys = ctx.vault.keys if ctx.vault else ()
    names = _note_breakers(ctx.caller.user_id, keys)
    if peeked and all(name in peeked for name in names):
        ctx.breakers = routing.breakers(keys, found=peeked)


def finish(ctx: Context) -> None:
    """The call is over (its answer sent, or abandoned): free its in-flight slot, charge its tokens,
    and hand its usage records to the spool, all in one Redis round trip."""
    spooled, ctx.spooled = _encoded(ctx.spooled), []
    handed = False
    if ctx.admitted:
        ctx.admitted = False
        handed = limits.finish(*_settling(ctx, spooled))
    if spooled and not handed:
        _hand_over(spooled)


def _settling(ctx: Context, spooled: list) -> tuple:
    """``limits.finish``'s arguments for this call: the records go in the same round trip."""
    also = (lambda pipe: spool.push(pipe, [encoded for _, encoded in spooled])) if spooled else None
    return ctx.caller.user_id, ctx.caller.key_id, ctx.request_id, ctx.tokens_used, bool(ctx.caller.tpm_limit), also


def _hand_over(spooled: list) -> None:
    """Records the settling round trip did not deliver: to the spool on their own, else written here."""
    if not spool.hand_off([encoded for _, encoded in spooled]):
        for fields, _ in spooled:  # Redis would not take them: written here, as without a spool
            _insert_record(fields)


def _encoded(records: list[dict]) -> list[tuple[dict, bytes]]:
    """(fields, encoded) for the spool: encoded here, once the answer has left, not while the client waits."""
    encoded = []
    for fields in records:
        try:
            encoded.append((fields, spool.encode(fields)))
        except Exception as error:
            log.error("usage record for %s not spooled: %s", fields["request_id"], type(error).__name__)
            _insert_record(fields)
    return encoded


# Records handed over in greenlets of their own (``finish_after``), joined before the process exits.
_finishing: set = set()


def finish_after(ctx: Context) -> None:
    """``finish``, once the answer has left. Under gevent (the web workers) nothing waits for it: its
    commands go with this process's next Redis round trip, usually the admission of the
    connection's next call (ahead of its check, so the freed slot is free for it), or in one of
    their own as soon as the event loop turns (``limits.finish_later``). Only if Redis did not
    take the records are they handed over again, in a greenlet of their own. Elsewhere (threads,
    Django's test server) it runs at once."""
    if not ctx.admitted and not ctx.spooled:
        return  # nothing to settle (a refused call, /v1/models)
    if not _monkey.is_module_patched("socket"):
        finish(ctx)
        return
    spooled, ctx.spooled = _encoded(ctx.spooled), []

    def settled(handed: bool) -> None:
        if spooled and not handed:
            finisher = gevent.spawn(_hand_over_and_release, spooled)
            _finishing.add(finisher)
            finisher.link(_finishing.discard)

    if ctx.admitted:
        ctx.admitted = False
        limits.finish_later(*_settling(ctx, spooled), settled)
    else:
        settled(False)


def _hand_over_and_release(spooled: list) -> None:
    try:
        _hand_over(spooled)
    finally:  # this greenlet's database connection (a record written here) is closed: handed back to the pool
        for opened in connections.all(initialized_only=True):
            opened.close()


@atexit.register
def _join_finishing() -> None:
    """At exit (a worker told to stop): the settlings still queued leave, and the records handed over
    meanwhile are written, so that none is lost."""
    cache.flush_deferred()
    deadline = time.monotonic() + 10
    while _finishing and time.monotonic() < deadline:  # (a hand-over may start while others are joined)
        gevent.joinall(list(_finishing), timeout=deadline - time.monotonic())


def after_answer(ctx: Context) -> None:
    """What waits until the answer has left: the key's "last used", a database write, once a minute."""
    if ctx.last_used_due is not None:
        key_id, ctx.last_used_due = ctx.last_used_due, None
        limits.touch_key(key_id)


# read and validate ----------------------------------------------------------------


def read_json(request) -> dict:
    limit = settings.AURA_MAX_BODY_BYTES
    too_large = ApiError(
        413,
        f"The request body is larger than the {limit // (1024 * 1024)} MB limit.",
        "invalid_request_error",
        "request_too_large",
    )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise errors.invalid_request("The Content-Length header is not a number.") from None
    if declared > limit:
        raise too_large
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large
    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding and encoding != "identity":
        raw = _decoded(raw, encoding, limit, too_large)
    # Nesting is bounded by the C parser itself (it raises RecursionError past ~1,000 levels),
    # which costs nothing on ordinary bodies, unlike a byte scan of every request.
    try:
        body = _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise errors.invalid_request(
            "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json."
        ) from None
    if not isinstance(body, dict):
        raise errors.invalid_request("The request body must be a JSON object.")
    return body


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number too large")
    return value


# What JSON is: Python's parser also takes NaN and Infinity (and 1e999 as inf), which no provider
# does; refused here, before the call is routed, instead of failing when the body is sent on.
_JSON = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)

# zlib's window bits: gzip's header and trailer, or deflate's zlib wrapper.
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decoded(raw: bytes, encoding: str, limit: int, too_large: ApiError) -> bytes:
    """A compressed body, inflated up to the body limit (a small body that inflates past it is refused
    as a large one would be, before it is all in memory)."""
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise ApiError(
            415,
            f"The Content-Encoding '{encoding[:40]}' is not supported: send the body as it is, or compressed with gzip or deflate.",
            "invalid_request_error",
            "unsupported_content_encoding",
        )
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise errors.invalid_request(f"The request body is not valid {encoding} data.", code="invalid_content_encoding") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise too_large
    return body


MAX_MESSAGES = 4096
MAX_TOOLS = 512
TOOL_CHOICES = ("none", "auto", "required")


def _number(body: dict, name: str, low: float, high: float, integer: bool = False) -> None:
    value = body.get(name)
    if value is None:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise errors.invalid_request(f"'{name}' must be {kind} between {low} and {high}.", name)


# Characters no model name has, which would also break the x-aura-model header that names it.
_NOT_IN_NAMES = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
MAX_MODEL_NAME = 256


def _model_name(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise errors.invalid_request("You must provide a model parameter.", "model")
    model = model.strip()
    if len(model) > MAX_MODEL_NAME or _NOT_IN_NAMES.search(model):
        raise errors.invalid_request(
            f"'model' must be a model name: at most {MAX_MODEL_NAME} characters, with no control characters or line breaks.", "model"
        )
    return model


def _part_error(part) -> str | None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        return "parts must be objects with a 'type'"
    if part["type"] == "text" and not isinstance(part.get("text"), str):
        return "text parts need a string 'text'"
    if part["type"] == "image_url" and not (isinstance(part.get("image_url"), dict) and isinstance(part["image_url"].get("url"), str)):
        return "image_url parts need an 'image_url' object with a string 'url'"
    return None


def _tool_call_ok(call) -> bool:
    function = call.get("function") if isinstance(call, dict) else None
    return (
        isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments", ""), str)
        and isinstance(call.get("id", ""), (str, type(None)))
    )


def _validate_message(index: int, message) -> None:
    """The fields the adapters read; what they pass through as is stays the provider's to judge."""
    param = f"messages[{index}]"
    if not isinstance(message, dict) or not isinstance(message.get("role"), str) or message["role"] not in ROLES:
        raise errors.invalid_request(f"{param} must be an object whose 'role' is one of {', '.join(sorted(ROLES))}.", param)
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise errors.invalid_request(f"{param}.content must be a string or an array of content parts.", f"{param}.content")
    if content == []:
        raise errors.invalid_request(f"{param}.content is an empty array: send at least one content part.", f"{param}.content")
    for part in content if isinstance(content, list) else ():
        if problem := _part_error(part):
            raise errors.invalid_request(f"{param}.content {problem}.", f"{param}.content")
    calls = message.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(_tool_call_ok(c) for c in calls)):
        raise errors.invalid_request(
            f'{param}.tool_calls must be an array of {{"id", "function": {{"name", "arguments"}}}} objects with string values.',
            f"{param}.tool_calls",
        )
    if not isinstance(message.get("tool_call_id", ""), (str, type(None))):
        raise errors.invalid_request(f"{param}.tool_call_id must be a string.", f"{param}.tool_call_id")
    if message["role"] == "tool" and not message.get("tool_call_id"):
        raise errors.invalid_request(f"Missing required parameter: '{param}.tool_call_id'.", f"{param}.tool_call_id")


def validate_chat(body: dict) -> None:
    _model_name(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.invalid_request("'messages' must be a non-empty array.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise errors.invalid_request(f"'messages' may hold at most {MAX_MESSAGES} messages.", "messages")
    if isinstance(body.get("tools"), list) and len(body["tools"]) > MAX_TOOLS:
        raise errors.invalid_request(f"'tools' may hold at most {MAX_TOOLS} tools.", "tools")
    for index, message in enumerate(messages):
        _validate_message(index, message)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "n", 1, 128, integer=True)
    _number(body, "max_tokens", 1, 10_000_000, integer=True)
    _number(body, "max_completion_tokens", 1, 10_000_000, integer=True)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "top_logprobs", 0, 20, integer=True)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise errors.invalid_request("'stream' must be true or false.", "stream")
    if not isinstance(body.get("stream_options", {}), (dict, type(None))):
        raise errors.invalid_request("'stream_options' must be an object.", "stream_options")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise errors.invalid_request("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    if not isinstance((body.get("stream_options") or {}).get("include_usage", False), bool):
        raise errors.invalid_request("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise errors.invalid_request("'stop' must be a string or an array of at most 4 strings.", "stop")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(
            isinstance(t, dict)
            and t.get("type") == "function"
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        ):
            raise errors.invalid_request('\'tools\' must be an array of {"type": "function", "function": {"name": …}} objects.', "tools")
    choice = body.get("tool_choice")
    if (
        choice is not None
        and choice not in TOOL_CHOICES
        and not (isinstance(choice, dict) and isinstance(choice.get("function"), dict) and isinstance(choice["function"].get("name"), str))
    ):
        raise errors.invalid_request(
            '\'tool_choice\' must be none, auto, required or {"type": "function", "function": {"name": …}}.', "tool_choice"
        )
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema")):
        raise errors.invalid_request("'response_format.type' must be one of text, json_object, json_schema.", "response_format")
    if fmt is not None and not isinstance(fmt.get("json_schema", {}), (dict, type(None))):
        raise errors.invalid_request("'response_format.json_schema' must be an object.", "response_format")


def _tokens(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit on one request's inputs
MAX_EMBEDDING_DIMENSIONS = 16_384  # above every catalogued model's (3,072 today): the provider checks its own


def validate_embeddings(body: dict) -> None:
    _model_name(body)
    value = body.get("input")
    ok = isinstance(value, str) or (
        isinstance(value, list) and value and (all(isinstance(v, str) for v in value) or _tokens(value) or all(_tokens(v) for v in value))
    )
    if not ok:
        raise errors.invalid_request("'input' must be a string, an array of strings, or an array of token arrays.", "input")
    if value == "" or (isinstance(value, list) and "" in value):
        raise errors.invalid_request("'input' must not be an empty string.", "input")
    if isinstance(value, list) and len(value) > MAX_EMBEDDING_INPUTS and not _tokens(value):
        raise errors.invalid_request(f"'input' may hold at most {MAX_EMBEDDING_INPUTS:,} inputs.", "input")
    _number(body, "dimensions", 1, MAX_EMBEDDING_DIMENSIONS, integer=True)
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise errors.invalid_request("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise errors.invalid_request("'user' must be a string.", "user")


# route -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    model: catalog.Model
    provider: Provider
    vault: services.SealedVault
    key: services.SealedKey

    @property
    def base_url(self) -> str:
        return self.key.base_url or self.provider.base_url


def lookup(name: str, vault: services.SealedVault | None) -> catalog.Model | None:
    """The model a name asks for: a catalog id, ``provider/model``, or ``label/model`` (the model of
    the provider whose key carries that label: a custom server's, or one of several keys)."""
    models = catalog.load().models
    if name in models:
        return models[name]
    prefix, slash, rest = name.partition("/")
    if slash and rest:
        if prefix not in PROVIDERS:
            labelled = {k.provider for k in vault.keys if k.label == prefix} if vault else set()
            if not labelled:
                return None
            listed = models.get(rest)
            if listed and listed.provider in labelled:
                return listed
            if "custom" in labelled:  # named as asked: each server's models are its own (usage, cache, headers)
                return catalog.unlisted("custom", rest, name=name)
            return catalog.unlisted(min(labelled), rest)
        listed = models.get(rest)
        if listed and listed.provider == prefix:
            return listed
        return catalog.unlisted(prefix, rest)
    return None


def key_for(vault: services.SealedVault | None, model: catalog.Model, name: str) -> services.SealedKey | None:
    """The provider key that serves ``model`` asked for as ``name``: the one whose label ``name``
    starts with (``label/model``), else the provider's default key."""
    if vault is None:
        return None
    prefix, slash, _ = name.partition("/")
    if slash and prefix not in PROVIDERS:
        return next((k for k in vault.keys if k.provider == model.provider and k.label == prefix), None)
    return vault.default_key(model.provider)


def resolve(caller: services.Caller, vault, name: str, capability: str) -> tuple[catalog.Model, services.SealedKey]:
    """A model name to the catalog model and the provider key that will serve it."""
    model = lookup(name, vault)
    if model is None:
        raise errors.model_not_found(name)
    provider = PROVIDERS[model.provider]
    if capability == "embeddings" and (not provider.embeddings or (model.listed and not model.supports("embeddings"))):
        raise errors.invalid_request(f"The model '{model.id}' does not create embeddings.", "model", "model_not_supported")
    if capability == "chat" and model.listed and not model.supports("chat"):
        raise errors.invalid_request(f"The model '{model.id}' is not a chat model; use /v1/embeddings.", "model", "model_not_supported")
    key = key_for(vault, model, name)
    if key is None and model.provider == "custom":
        servers = sorted(k.label for k in vault.keys if k.provider == "custom") if vault else []
        raise errors.invalid_request(
            f"Call an OpenAI-compatible server's model by the server's label: 'label/model' (yours: {', '.join(servers)})."
            if servers
            else "No OpenAI-compatible server is stored for this account. Add one under Provider keys in the AURA cabinet.",
            "model",
            "provider_key_missing",
        )
    if key is None:
        raise errors.invalid_request(
            f"No {provider.name} key is stored for this account. Add one under Provider keys in the AURA cabinet to use '{model.id}'.",
            "model",
            "provider_key_missing",
        )
    return model, key


def route(ctx: Context, name: str, capability: str) -> Route:
    vault = ctx.vault
    model, key = resolve(ctx.caller, vault, name, capability)
    return Route(model, PROVIDERS[model.provider], vault, key)


def plan(ctx: Context, body: dict) -> list[Route]:
    """The routes to try for a chat call, primary first; sets the baseline model."""
    caller, vault = ctx.caller, ctx.vault
    name = body["model"].strip()
    if name in routing.AUTO_NAMES and not ctx.plan.includes("routing"):
        raise _not_in_plan("automatic routing", ctx.plan)
    # Auto routing needs a real count (context windows, difficulty); explicit routes only check fallbacks.
    auto = name in routing.AUTO_NAMES
    estimate = count_prompt(body, "o200k_base") if auto else len(json.dumps(body.get("messages"))) // 4
    rough = routing.needs_of(body, estimate, judge=auto)
    ctx.conversation = routing.conversation_id(caller.user_id, body)
    choices = routing.plan(caller, vault, name, rough, ctx.conversation, lambda n: resolve(caller, vault, n, "chat"))
    if name in routing.AUTO_NAMES:
        ctx.baseline_model = lookup(caller.reference_model, vault) or choices[0].model
    else:
        ctx.baseline_model = choices[0].model
    ctx.route_reason = choices[0].reason
    return [Route(c.model, PROVIDERS[c.model.provider], vault, c.key) for c in choices]


# options --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    compression: str
    cache: str  # "on", "off" or "refresh"
    cache_ttl: int
    max_prompt_tokens: int | None


def _header_int(request, name: str, low: int, high: int) -> int | None:
    raw = request.META.get("HTTP_" + name.upper().replace("-", "_"))
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise errors.invalid_request(f"The {name} header must be a whole number between {low} and {high}.", name)
    return value


def _not_in_plan(feature: str, plan) -> ApiError:
    return ApiError(
        403,
        f"The {plan.name} plan does not include {feature}. Upgrade on the AURA billing page.",
        "permission_error",
        "feature_not_in_plan",
    )


def options(request, caller: services.Caller, plan: Plan) -> Options:
    """The key's settings, overridden per request by x-aura-* headers, within what the plan includes.

    A key setting the plan no longer includes is quietly off; asking for it per request is a 403.
    """
    asked = request.META.get("HTTP_X_AURA_COMPRESS")
    level = (asked or caller.compression).strip().lower()
    if level not in compression.LEVELS:
        raise errors.invalid_request("The x-aura-compress header must be off, lossless or aggressive.", "x-aura-compress")
    if level == "aggressive" and not plan.includes("aggressive_compression"):
        if asked:
            raise _not_in_plan("aggressive compression", plan)
        level = "lossless"
    asked = request.META.get("HTTP_X_AURA_CACHE")
    cache_mode = (asked or ("on" if caller.cache_enabled else "off")).strip().lower()
    if cache_mode not in ("on", "off", "refresh"):
        raise errors.invalid_request("The x-aura-cache header must be on, off or refresh.", "x-aura-cache")
    if cache_mode != "off" and not plan.includes("response_cache"):
        if asked:
            raise _not_in_plan("the response cache", plan)
        cache_mode = "off"
    ttl = _header_int(request, "x-aura-cache-ttl", 1, response_cache.MAX_TTL) or caller.cache_ttl
    budget = _header_int(request, "x-aura-max-prompt-tokens", 1, 10_000_000)
    return Options(compression=level, cache=cache_mode, cache_ttl=ttl, max_prompt_tokens=budget)


CONTEXT_MARGIN = 1.05


def compress(ctx: Context, body: dict, opts: Options, model: catalog.Model) -> dict:
    """Compress the prompt as allowed; count it as the client sent it and as it is sent.

    The texts compression rewrote were counted there, before and after: those counts are reused.
    """
    result = compression.compress(body, level=opts.compression, encoding=encoding_for(model), max_prompt_tokens=opts.max_prompt_tokens)
    ctx.compression = opts.compression
    ctx.tokens_original = prompt_tokens(body, model, result.counts)
    ctx.tokens_sent = ctx.tokens_original if result.body is body else prompt_tokens(result.body, model, result.counts)
    window = model.context_window
    # OpenAI's models are counted with their own tokenizer: clearly over the window, the provider would
    # refuse the call. (The margin: tools are counted as JSON, which OpenAI may encode in fewer tokens.
    # Other providers' counts are estimates here: their own refusal decides.)
    if window and model.provider == "openai" and ctx.tokens_sent > window * CONTEXT_MARGIN:
        raise errors.invalid_request(
            f"This model's maximum context length is {window:,} tokens, and your messages come to about "
            f"{ctx.tokens_sent:,} (after AURA's compression). Shorten them, or use a model with a larger context window.",
            "messages",
            "context_length_exceeded",
        )
    return result.body


# count and price ----------------------------------------------------------------------


def encoding_for(model: catalog.Model) -> str:
    """o200k_base for GPT-4o, GPT-4.1, GPT-5 and the o-series; cl100k_base otherwise (an estimate for non-OpenAI models)."""
    name = model.upstream.lower().rsplit("/", 1)[-1]
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o", "gpt-oss")):
        return "o200k_base"
    return "cl100k_base"


def prompt_tokens(body: dict, model: catalog.Model, known: dict[str, int] | None = None) -> int:
    return count_prompt(body, encoding_for(model), known)


def count_prompt(body: dict, encoding: str, known: dict[str, int] | None = None) -> int:
    """Prompt tokens as OpenAI counts chat messages: content plus a few tokens of framing per message.

    ``known`` maps texts to counts already made with ``encoding`` (``compression.Compressed.counts``);
    the texts counted here are added to it, so that counting the compressed body after the original
    one, which shares most of its texts, costs next to nothing.
    """
    known = {} if known is None else known

    def count(text: str) -> int:
        tokens = known.get(text)
        if tokens is None:
            tokens = known[text] = tokenizer.count_tokens(text, encoding)
        return tokens

    total = 3
    for message in body.get("messages") or ():
        total += 3
        content = message.get("content")
        if isinstance(content, str):
            total += count(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    total += count(part.get("text") or "")
                elif part.get("type") == "image_url":
                    total += 85  # a low-detail image tile, OpenAI's base charge
        if message.get("tool_calls"):
            total += count(json.dumps(message["tool_calls"]))
    if body.get("tools"):
        total += count(json.dumps(body["tools"]))
    return total


def embedding_tokens(body: dict, model: catalog.Model) -> int:
    value = body.get("input")
    items = [value] if isinstance(value, str) else value
    encoding = encoding_for(model)
    return sum(
        tokenizer.count_tokens(item, encoding) if isinstance(item, str) else (1 if isinstance(item, int) else len(item)) for item in items
    )


# forward ---------------------------------------------------------------------------


def make_call(route: Route, body: dict, conversation: str | None = None) -> Call:
    """Decrypt the provider key now, at the moment of forwarding, and nowhere earlier.

    ``conversation`` (chat only) turns on provider-cache steering: Anthropic
    breakpoints, and an OpenAI ``prompt_cache_key`` per conversation.
    """
    stream = bool(body.get("stream"))
    include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    try:
        secret = route.vault.reveal(route.key)
    except VaultError:
        raise errors.provider_key_unreadable(route.provider.name) from None
    return Call(
        steer_cache=conversation is not None,
        prompt_cache_key=f"aura-{conversation}" if conversation and route.provider.code == "openai" else None,
        base_url=route.base_url,
        secret=secret,
        upstream_model=route.model.upstream,
        body=body,
        stream=stream,
        include_usage=include_usage,
        max_output_tokens=route.model.max_output_tokens,
    )


def build(adapter_step, call: Call) -> Upstream:
    try:
        return adapter_step(call)
    except AdapterError as error:
        raise errors.invalid_request(str(error), error.param) from None


def _upstream_error(ctx: Context, response: upstream.Response) -> ApiError:
    """Say what the provider said in kind (status, type, code), never its message: it may quote the prompt."""
    provider = ctx.route.provider
    try:
        data = response.json()
    except ValueError:
        data = None
    info = ADAPTERS[provider.protocol].error_info(data)
    kind, code, param = info.kind, info.code, info.param
    status = response.status_code
    detail = ", ".join(str(x) for x in (kind, code) if x)
    suffix = f" ({detail})" if detail else ""
    if status == 429:
        # Gemini says when in the body (RetryInfo), which its adapter reads, rather than in a header.
        retry_after = response.headers.get("Retry-After") or info.retry_after
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return ApiError(
            429,
            f"{provider.name} is rate limiting this key. Retry after a short wait{suffix}.",
            "rate_limit_error",
            "rate_limit_exceeded",
            headers=headers,
        )
    if status in (401, 403) or code == "API_KEY_INVALID":  # Gemini answers a bad key with 400
        return ApiError(
            400,
            f"{provider.name} rejected the stored provider key (HTTP {status}). Replace it under Provider keys in the AURA cabinet.",
            "invalid_request_error",
            "provider_key_rejected",
        )
    if code == "context_length_exceeded":
        return ApiError(
            400,
            f"The messages are longer than this model's context window at {provider.name}. "
            "Shorten them, or use a model with a larger context window.",
            "invalid_request_error",
            code,
            "messages",
        )
    if 400 <= status < 500:
        return ApiError(
            400 if status != 404 else 404,
            f"{provider.name} rejected the request (HTTP {status}){suffix}.",
            "invalid_request_error",
            code or "upstream_rejected",
            param,
        )
    return ApiError(502, f"{provider.name} returned an error (HTTP {status}). Try again shortly.", "upstream_error", "upstream_error")


def send(ctx: Context, request: Upstream, *, stream: bool) -> upstream.Response:
    ctx.upstream_started = time.perf_counter()
    try:
        response = upstream.send(request, stream=stream)
    except upstream.Insecure:
        ctx.upstream_started = None  # no call was made: no usage record, and no failure of the provider's
        raise ApiError(
            400,
            f"This account's {ctx.route.provider.name} key has a plain http base URL, and AURA sends keys only over TLS. "
            "Change it to https:// under Provider keys in the AURA cabinet.",
            "invalid_request_error",
            "insecure_base_url",
        ) from None
    except upstream.PrivateAddress:
        ctx.upstream_started = None  # no call was made, as above
        raise ApiError(
            400,
            f"The base URL of this account's {ctx.route.provider.name} key now leads to a private or local address, "
            "which this AURA does not call. Check its host under Provider keys in the AURA cabinet.",
            "invalid_request_error",
            "private_base_url",
        ) from None
    except upstream.Timeout:
        ctx.upstream_seconds += time.perf_counter() - ctx.upstream_started
        raise ApiError(504, f"{ctx.route.provider.name} did not answer in time.", "upstream_error", "upstream_timeout") from None
    except upstream.Unreachable:
        ctx.upstream_seconds += time.perf_counter() - ctx.upstream_started
        raise ApiError(502, f"AURA could not reach {ctx.route.provider.name}.", "upstream_error", "upstream_unreachable") from None
    ctx.ttfb_ms = int((time.perf_counter() - ctx.upstream_started) * 1000)
    if not stream:
        ctx.upstream_seconds += time.perf_counter() - ctx.upstream_started
    if response.status_code >= 400:
        if stream:
            ctx.upstream_seconds += time.perf_counter() - ctx.upstream_started
        error = _upstream_error(ctx, response)
        response.close()
        raise error
    return response


def parse(ctx: Context, response: upstream.Response) -> dict:
    try:
        data = response.json()
    except ValueError:
        raise ApiError(
            502, f"{ctx.route.provider.name} sent an answer AURA could not read.", "upstream_error", "upstream_invalid"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(502, f"{ctx.route.provider.name} sent an answer AURA could not read.", "upstream_error", "upstream_invalid")
    return data


# account ---------------------------------------------------------------------------


def account(ctx: Context, usage: Usage, *, status: int, error_class: str = "", final: bool = True) -> None:
    """One usage record per upstream call (or cache hit), keyed by the request id. Counts and money only.

    A failed attempt that a fallback follows is recorded under ``<id>-<n>``; the
    call's outcome keeps the bare id the client sees. A failed write is logged and
    swallowed: the provider has answered (and billed), so the client gets its answer.
    """
    route = ctx.route
    baseline = (ctx.baseline_model or route.model).prices
    if ctx.cache_status == "hit":
        ctx.savings = savings_.cache_hit(usage=usage, baseline=baseline, removed_tokens=ctx.tokens_original - ctx.tokens_sent)
    else:
        ctx.savings = savings_.compute(
            usage=usage,
            used=route.model.prices,
            baseline=baseline,
            removed_tokens=ctx.tokens_original - ctx.tokens_sent,
            aura_cached=ctx.aura_cached,
        )
    ctx.cost = ctx.savings.actual
    if ctx.cache_status != "hit":
        ctx.tokens_used += usage.prompt_tokens + usage.completion_tokens
    ctx.attempt += 1
    request_id = ctx.request_id if final else f"{ctx.request_id}-{ctx.attempt}"
    try:
        fields = _record(ctx, request_id, usage, status, error_class)
    except Exception as error:
        log.error("usage record for %s not made: %s", request_id, type(error).__name__)
        return
    if spool.enabled():
        ctx.spooled.append(fields)  # encoded and handed over by finish(), with the limits
        return
    _insert_record(fields)


def _insert_record(fields: dict) -> None:
    """A failed write is logged and swallowed: the provider has answered (and billed)."""
    try:
        usage_record(**fields)
    except Exception as error:
        log.error("usage record for %s not written: %s", fields["request_id"], type(error).__name__)


def _record(ctx: Context, request_id: str, usage: Usage, status: int, error_class: str) -> dict:
    route, saved = ctx.route, ctx.savings
    return dict(
        request_id=request_id,
        created=timezone.now(),
        user_id=ctx.caller.user_id,
        api_key_id=ctx.caller.key_id,
        endpoint=ctx.endpoint,
        model_requested=ctx.model_requested[:120],
        model_used=route.model.id[:120],
        provider=route.provider.code,
        stream=ctx.stream,
        status=status,
        error_class=error_class,
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        completion_tokens=usage.completion_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        tokens_counted=not usage.reported,
        tokens_original=ctx.tokens_original,
        tokens_sent=ctx.tokens_sent,
        ttfb_ms=ctx.ttfb_ms,
        latency_ms=int((time.perf_counter() - ctx.started) * 1000),
        cost_usd=saved.actual,
        baseline_cost_usd=saved.baseline,
        savings_compression_usd=saved.compression,
        savings_cache_usd=saved.response_cache,
        savings_provider_cache_usd=saved.provider_cache,
        savings_routing_usd=saved.routing,
        cache_status=ctx.cache_status,
        route_reason=ctx.route_reason[:40],
        compression=ctx.compression,
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )


# forward with fallbacks ------------------------------------------------------------

RETRIABLE = {429, 502, 504}


def forward(ctx: Context, routes: list[Route], body: dict, conversation: str | None, build_step) -> tuple[upstream.Response, Call]:
    """Try each route in order: cooldowns are skipped, 429/5xx/timeouts fall through to the next.

    With a single route, a 429 whose Retry-After is short, or a 5xx, is retried once after a pause.
    """
    last_error = None
    breakers = ctx.breakers
    if breakers is None or any(routing.host(r.key) not in breakers for r in routes):
        breakers = routing.breakers([r.key for r in routes])
    usable = [r for r in routes if breakers[routing.host(r.key)] >= 0] or routes[:1]
    if usable[0] is not routes[0]:
        ctx.route_reason = "fallback:cooldown"

    def tripped(route: Route) -> bool:
        """Its host failed that often, during this call included: a fallback on it is not tried."""
        return breakers[routing.host(route.key)] >= routing.BREAKER_THRESHOLD

    for index, candidate in enumerate(usable):
        if index > 0 and tripped(candidate):
            continue
        ctx.route = candidate
        if index > 0:
            ctx.route_reason = f"fallback:{_reason_code(last_error)}"
        for attempt in range(2):
            call = make_call(candidate, body, conversation)
            request = build(build_step, call)
            try:
                response = send(ctx, request, stream=call.stream)
            except ApiError as error:
                if error.status not in RETRIABLE:
                    raise
                if error.status != 429:  # (the account's own limit, not the host's health: see record_outcome)
                    routing.record_outcome(candidate.key, ok=False, analytics=ctx.caller.analytics)
                    breakers[routing.host(candidate.key)] += 1  # a later success on this route clears the streak
                last_error = error
                more = not all(tripped(r) for r in usable[index + 1 :])
                pause = _retry_pause(error) if not more and attempt == 0 else None
                if not more and pause is None:
                    raise
                account(ctx, Usage(), status=error.status, error_class=error.code or error.type, final=False)
                if pause is None:
                    break
                time.sleep(pause)
                continue
            ctx.aura_cached = call.steered
            routing.record_outcome(
                candidate.key, ok=True, latency_ms=ctx.ttfb_ms, analytics=ctx.caller.analytics, streak=breakers[routing.host(candidate.key)]
            )
            return response, call
    raise last_error


def _reason_code(error: ApiError | None) -> str:
    if error is None:
        return "error"
    return {429: "429", 504: "timeout"}.get(error.status, "5xx" if error.code == "upstream_error" else "unreachable")


def _retry_pause(error: ApiError) -> float | None:
    if error.status == 429:
        try:
            wait = float(error.headers.get("Retry-After", ""))
        except ValueError:
            return None
        return wait if 0 <= wait <= 2 else None
    return 0.25 if error.code == "upstream_error" else None


# response cache ----------------------------------------------------------------------


def cache_lookup(ctx: Context, body: dict, opts: Options) -> tuple[bytes | None, dict | None]:
    """The canonical request (when caching applies) and a cached answer if there is one."""
    if opts.cache == "off":
        return None, None
    request = response_cache.canonical(body, ctx.route.model.id, ctx.route.key.base_url)
    answer = response_cache.lookup(ctx.caller.user_id, request) if opts.cache == "on" else None
    ctx.cache_status = "hit" if answer else "miss"
    return request, answer


def replay(answer: dict, include_usage: bool):
    """A cached completion as the SSE stream OpenAI would have sent."""
    base = {"id": answer.get("id"), "object": "chat.completion.chunk", "created": int(time.time()), "model": answer.get("model")}
    for choice in answer.get("choices") or ():
        message = choice.get("message") or {}
        index = choice.get("index", 0)
        yield sse({**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
        if message.get("content"):
            yield sse({**base, "choices": [{"index": index, "delta": {"content": message["content"]}, "finish_reason": None}]})
        if message.get("tool_calls"):
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            yield sse({**base, "choices": [{"index": index, "delta": {"tool_calls": calls}, "finish_reason": None}]})
        yield sse({**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
    if include_usage:
        yield sse({**base, "choices": [], "usage": answer.get("usage")})
    yield sse("[DONE]")


def usage_of_answer(answer: dict) -> Usage:
    data = answer.get("usage") or {}
    return Usage(
        prompt_tokens=data.get("prompt_tokens") or 0,
        completion_tokens=data.get("completion_tokens") or 0,
        reported=True,
    )


class Assembler:
    """Rebuilds a streamed answer into a chat.completion, to store in the response cache."""

    def __init__(self):
        self.base: dict = {}
        self.choices: dict[int, dict] = {}

    def add(self, item) -> None:
        chunk = json.loads(item) if isinstance(item, str | bytes) else item
        if not self.base:
            self.base = {"id": chunk.get("id"), "object": "chat.completion", "created": chunk.get("created"), "model": chunk.get("model")}
        for choice in chunk.get("choices") or ():
            slot = self.choices.setdefault(choice.get("index", 0), {"content": [], "tool_calls": {}, "finish_reason": None})
            delta = choice.get("delta") or {}
            if delta.get("content"):
                slot["content"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                entry = slot["tool_calls"].setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
                )
                entry["id"] = call.get("id") or entry["id"]
                function = call.get("function") or {}
                entry["function"]["name"] = function.get("name") or entry["function"]["name"]
                entry["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]

    def answer(self, usage: Usage) -> dict:
        choices = []
        for index, slot in sorted(self.choices.items()):
            message = {"role": "assistant", "content": "".join(slot["content"]) or None}
            if slot["tool_calls"]:
                message["tool_calls"] = [slot["tool_calls"][i] for i in sorted(slot["tool_calls"])]
            choices.append({"index": index, "message": message, "finish_reason": slot["finish_reason"], "logprobs": None})
        return {**self.base, "choices": choices, "usage": usage.as_openai()}


class ServerStopping(gevent.GreenletExit):
    """Thrown into a stream's greenlet when the worker must stop before the stream ends (a
    GreenletExit: no ``except Exception`` on the way takes it for the provider's failure, and gunicorn
    takes it, where it reaches gunicorn's own code, for the kill it is)."""


# The greenlets relaying a stream now, for ``end_streams``.
_streaming: set = set()


def end_streams() -> None:
    """End every stream this worker is relaying (aura.gunicorn_worker: the worker is stopping)."""
    for greenlet in list(_streaming):
        gevent.kill(greenlet, ServerStopping)  # (raised where it waits; this does not wait for it)


def stream_events(ctx: Context, response: upstream.Response, call: Call, adapter, cache_store=None):
    """Relay the answer chunk by chunk; account for it however the stream ends.

    A finished stream is accounted before its closing ``[DONE]``, so the record
    exists by the time the client has its whole answer.
    """
    state = StreamState()
    accounted = False

    def settle(status: int, error_class: str = "") -> None:
        nonlocal accounted
        if accounted:
            return
        accounted = True
        ctx.upstream_seconds += time.perf_counter() - (ctx.upstream_started or time.perf_counter())
        usage = state.usage
        if not usage.reported:
            # No usage from the provider (it never came, or the client left): count what was sent,
            # with the provider's own count of the prompt when it gave one before the answer.
            completion = tokenizer.count_tokens("".join(state.sent_chars), encoding_for(ctx.route.model))
            given = state.input_usage
            usage = (
                Usage(given.prompt_tokens, given.cached_tokens, given.cache_write_tokens, completion)
                if given
                else Usage(prompt_tokens=ctx.tokens_sent, completion_tokens=completion)
            )
        account(ctx, usage, status=status, error_class=error_class)

    def failure(message: str, code: str) -> bytes:
        return sse({"error": {"message": message, "type": "upstream_error", "param": None, "code": code}})

    name = ctx.route.provider.name
    assembler = Assembler() if cache_store else None
    lines = upstream.iter_lines(response)
    held: list[bytes] = []  # events held back to leave with the stream's end, which has already arrived
    # Only while nothing before the end waits on the network: settling then only hands the record
    # to the spool; writing it to the database, or storing the answer in the response cache, would.
    may_hold = cache_store is None and spool.enabled()

    def last(piece: bytes, *, ends: bool = True) -> bytes:
        """The stream's final piece, with the events held back for it; ``ends``: the body's end may go
        with it (aura.handlers), which it may not while the provider's own end is still due (drain)."""
        ctx.last_piece = ends
        return b"".join(held) + piece

    relaying = gevent.getcurrent()
    _streaming.add(relaying)
    try:
        try:
            for item in adapter.stream_chunks(lines, call, state):
                if assembler:
                    assembler.add(item)
                if may_hold and response.rest_buffered():
                    held.append(sse(item))
                else:
                    yield sse(item)
        finally:  # relayed, or not: a stop from now on must not cut its settling or its last events
            _streaming.discard(relaying)
        if state.finished:
            settle(200)
            if assembler and state.usage.reported:
                cache_store(assembler.answer(state.usage))
            yield last(sse("[DONE]"), ends=response.rest_buffered())
            upstream.drain(response, lines)  # the client has its answer; keep the connection
        else:
            settle(502, "stream_incomplete")
            yield last(failure(f"{name} ended the stream early.", "stream_incomplete"))
    except GeneratorExit:
        settle(499, "client_disconnected")
        raise
    except ServerStopping:
        settle(503, "server_stopping")
        yield last(failure("AURA is restarting and cut this stream short. Send the request again.", "server_stopping"))
    except UpstreamStreamError as error:
        settle(502, "stream_error")
        yield last(failure(f"{name} reported an error mid-stream ({error.args[0]}).", "upstream_error"))
    except (*upstream.StreamBroken, ValueError) as error:
        settle(502, type(error).__name__[:40])
        yield last(failure(f"The stream from {name} broke off.", "stream_interrupted"))
    except Exception:  # a chunk the adapter could not make sense of (the log filter keeps only the class)
        log.exception("stream from %s unreadable (%s)", name, ctx.request_id)
        settle(502, "stream_unreadable")
        yield last(failure(f"{name} sent a stream AURA could not read.", "upstream_invalid"))
    finally:
        if not accounted:  # ended some other way: still one record
            settle(499, "stream_aborted")
        response.close()
