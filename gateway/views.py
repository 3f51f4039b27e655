"""The OpenAI-compatible /v1 surface. Each view reads as the pipeline's stages."""

import functools
import logging
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import catalog, errors, pipeline, response_cache, routing
from .adapters import ADAPTERS
from .errors import ApiError
from .providers import PROVIDERS

log = logging.getLogger(__name__)


def _respond(ctx: pipeline.Context, response):
    for name, value in ctx.headers().items():
        response[name] = value
    return response


def _fail(ctx: pipeline.Context, error: ApiError):
    if ctx.route and ctx.upstream_started is not None:
        pipeline.account(ctx, pipeline.Usage(), status=error.status, error_class=error.code or error.type)
    return _respond(ctx, error.response())


def _guard(view):
    """OpenAI-shaped errors for everything, including what nobody expected."""

    @csrf_exempt
    def wrapper(request, *args, **kwargs):
        ctx = pipeline.start(request, view.__name__)
        response = None
        try:
            response = view(request, ctx, *args, **kwargs)
        except ApiError as error:
            response = _fail(ctx, error)
        except Exception:
            log.exception("unexpected error in /v1 %s (%s)", view.__name__, ctx.request_id)
            failure = ApiError(500, "AURA hit an internal error. It has been logged; try again.", "server_error", "internal_error")
            response = _fail(ctx, failure)
        finally:
            if response is not None:
                # Settled once the answer has left (a stream's may last minutes), however it ends.
                response._resource_closers.append(lambda: pipeline.finish_after(ctx))
            else:  # answering failed: the slot is freed and the records are handed over at once
                pipeline.finish(ctx)
            if response is not None and ctx.last_used_due is not None:  # once a minute per key: written after the answer
                response._resource_closers.append(lambda: pipeline.after_answer(ctx))
        return response

    wrapper.__name__ = view.__name__
    return wrapper


def _require(request, method: str):
    """Only ``method`` (and HEAD where it is GET, as HTTP asks: the same head, no body)."""
    if request.method != method and not (method == "GET" and request.method == "HEAD"):
        allowed = "GET, HEAD" if method == "GET" else method
        raise ApiError(405, f"Use {method} for this endpoint.", "invalid_request_error", "method_not_allowed", headers={"Allow": allowed})


@_guard
def chat(request, ctx):
    _require(request, "POST")
    pipeline.admit(ctx, request)
    body = pipeline.read_json(request)
    pipeline.validate_chat(body)
    opts = pipeline.options(request, ctx.caller, ctx.plan)
    ctx.model_requested, ctx.stream = body["model"], bool(body.get("stream"))
    routes = pipeline.plan(ctx, body)
    ctx.route = routes[0]
    sent = pipeline.compress(ctx, body, opts, ctx.route.model)
    cache_request, cached = pipeline.cache_lookup(ctx, sent, opts)
    if cached and _served_route(ctx, routes, cached.pop(SERVED, None)):
        return _from_cache(ctx, cached, sent)
    conversation = ctx.conversation if sent is body else routing.conversation_id(ctx.caller.user_id, sent)
    body = sent
    response, call = pipeline.forward(ctx, routes, body, conversation, lambda c: ADAPTERS[ctx.route.provider.protocol].to_upstream(c))
    adapter = ADAPTERS[ctx.route.provider.protocol]
    store = None
    if cache_request is not None:

        def store(answer, tenant=ctx.caller.user_id, request=cache_request, ttl=opts.cache_ttl):
            if ctx.route is not routes[0]:  # a fallback answered: a hit must say so, not name the model asked for
                answer = {**answer, SERVED: [ctx.route.model.id, ctx.route_reason]}
            response_cache.store(tenant, request, answer, ttl)

    if call.stream:
        _release_database()
        events = pipeline.stream_events(ctx, response, call, adapter, cache_store=store)
        streamed = StreamingHttpResponse(events, content_type="text/event-stream")
        streamed["Cache-Control"] = "no-cache"
        streamed["X-Accel-Buffering"] = "no"
        streamed.is_last_piece = lambda: ctx.last_piece  # see aura.handlers.ApiHandler
        return _respond(ctx, streamed)
    data = pipeline.parse(ctx, response)
    answer, usage = adapter.from_upstream(data, call)
    pipeline.account(ctx, usage, status=200)
    if store:
        store(answer)
    if answer is data:  # passed through unchanged (OpenAI-compatible): the provider's own bytes, not serialised again
        return _respond(ctx, HttpResponse(response.content, content_type="application/json"))
    return _respond(ctx, JsonResponse(answer))


def _release_database():
    """A stream may last minutes: give a pooled database connection back now; the usage record takes one at the end.

    Only a connection this call opened is looked at: under gevent each greenlet has its own, and
    merely asking ``connection`` about it built one (2.5% of a stream's CPU, py-spy).
    """
    if settings.DATABASES["default"].get("OPTIONS", {}).get("pool"):
        for opened in connections.all(initialized_only=True):
            if opened.connection is not None and not opened.in_atomic_block:
                opened.close()


# In a cached answer a fallback gave: the model that answered and why (the entry is keyed by the model asked for).
SERVED = "_aura_served"


def _served_route(ctx, routes, served) -> bool:
    """Whether a cached answer can be replayed: it came from the plan's first route, or from one of its
    fallbacks, which the hit then reports (headers, usage record). A fallback no longer in the plan: a miss."""
    if not served:
        return True
    route = next((r for r in routes if r.model.id == served[0]), None)
    if route is None:
        ctx.cache_status = "miss"
        return False
    ctx.route, ctx.route_reason = route, served[1]
    return True


def _from_cache(ctx, answer: dict, body: dict):
    """A hit never reaches the provider: replayed as JSON or as SSE, accounted at zero provider cost."""
    pipeline.account(ctx, pipeline.usage_of_answer(answer), status=200)
    if ctx.stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        streamed = StreamingHttpResponse(pipeline.replay(answer, include_usage), content_type="text/event-stream")
        streamed["Cache-Control"] = "no-cache"
        return _respond(ctx, streamed)
    return _respond(ctx, JsonResponse(answer))


@_guard
def embeddings(request, ctx):
    _require(request, "POST")
    pipeline.admit(ctx, request)
    body = pipeline.read_json(request)
    pipeline.validate_embeddings(body)
    ctx.model_requested = body["model"]
    ctx.route = pipeline.route(ctx, body["model"].strip(), "embeddings")
    ctx.tokens_original = ctx.tokens_sent = pipeline.embedding_tokens(body, ctx.route.model)
    adapter = ADAPTERS[ctx.route.provider.protocol]
    call = pipeline.make_call(ctx.route, {**body, "stream": False})
    upstream = pipeline.build(adapter.embeddings_to_upstream, call)
    answer, usage = adapter.embeddings_from_upstream(pipeline.parse(ctx, pipeline.send(ctx, upstream, stream=False)), call)
    if not usage.reported:
        usage = pipeline.Usage(prompt_tokens=ctx.tokens_sent)
        answer["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
    pipeline.account(ctx, usage, status=200)
    return _respond(ctx, JsonResponse(answer))


def _usable_models(caller, vault):
    """The catalog's models this key can call: its account has the provider's key, and the key allows them."""
    providers = {k.provider for k in vault.keys} if vault else set()
    return [m for m in catalog.load().models.values() if m.provider in providers and routing.allowed(caller, m.id)]


def _model_entry(model: catalog.Model) -> dict:
    created = int(datetime.fromisoformat(catalog.load().version).replace(tzinfo=UTC).timestamp())
    capabilities = sorted(model.capabilities)
    return {
        "id": model.id,
        "object": "model",
        "created": created,
        "owned_by": model.provider,
        "provider": PROVIDERS[model.provider].name,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "capabilities": {c: c in capabilities for c in ("chat", "tools", "vision", "json", "embeddings")},
        "pricing": model.prices.as_dict(),
    }


@_guard
def models(request, ctx):
    _require(request, "GET")
    pipeline.authenticate(ctx, request)
    return _respond(ctx, JsonResponse({"object": "list", "data": [_model_entry(m) for m in _usable_models(ctx.caller, ctx.vault)]}))


@_guard
def model(request, ctx, model_id):
    """One model, by any name chat accepts for it: a catalog id, or ``provider/model`` (a catalog model
    named with its provider, a model the catalog does not list, a custom server's by its label)."""
    _require(request, "GET")
    pipeline.authenticate(ctx, request)
    if model_id in routing.AUTO_NAMES:
        return _respond(ctx, JsonResponse(_auto_entry(ctx, model_id)))
    found = pipeline.lookup(model_id, ctx.vault)
    if found is None or pipeline.key_for(ctx.vault, found, model_id) is None or not routing.allowed(ctx.caller, found.id, model_id):
        raise errors.model_not_found(model_id)
    return _respond(ctx, JsonResponse({**_model_entry(found), "id": model_id}))


def _auto_entry(ctx: pipeline.Context, name: str) -> dict:
    """``auto``, which chat routes to the cheapest capable model of those this key may call: what they
    can do together, and no price of its own (each call is priced as the model that served it)."""
    usable = [m for m in _usable_models(ctx.caller, ctx.vault) if m.supports("chat")]
    if not usable or not ctx.plan.includes("routing"):
        raise errors.model_not_found(name)
    entry = _model_entry(usable[0])
    flags = {c: any(m.supports(c) for m in usable) for c in entry["capabilities"]}
    return {
        **entry,
        "id": name,
        "owned_by": "aura",
        "provider": "AURA",
        "context_window": max(m.context_window or 0 for m in usable) or None,
        "max_output_tokens": max(m.max_output_tokens or 0 for m in usable) or None,
        "capabilities": flags,
        "pricing": None,
        "routing_policy": ctx.caller.routing_policy,
    }


@functools.cache
def _openapi_document() -> bytes:
    return Path(__file__).with_name("openapi.json").read_bytes()


@_guard
def openapi(request, ctx):
    """The OpenAPI document of /v1: public, like the rest of the API's documentation."""
    _require(request, "GET")
    response = _respond(ctx, HttpResponse(_openapi_document(), content_type="application/json"))
    response["Cache-Control"] = "public, max-age=3600"
    return response


@_guard
def not_found(request, ctx, rest=""):
    raise ApiError(404, f"Unknown endpoint /v1/{rest[:100]}.", "invalid_request_error", "unknown_url")
