"""OpenAI and every OpenAI-compatible server: the body passes through with the model renamed."""

import json

from .base import Call, ErrorInfo, StreamState, Upstream, Usage, iter_sse_data


def _headers(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


def to_upstream(call: Call) -> Upstream:
    body = dict(call.body)
    body["model"] = call.upstream_model
    if call.prompt_cache_key and not body.get("prompt_cache_key"):
        body["prompt_cache_key"] = call.prompt_cache_key
    if call.stream:
        # Always ask for usage so the call is accounted exactly; the client sees it only if it asked.
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return Upstream("POST", f"{call.base_url}/chat/completions", _headers(call.secret), body)


def usage_from(data: dict | None) -> Usage:
    if not data:
        return Usage()
    prompt_details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=data.get("prompt_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        completion_tokens=data.get("completion_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
        reported=True,
    )


def from_upstream(data: dict, call: Call) -> tuple[dict, Usage]:
    return data, usage_from(data.get("usage"))


def stream_chunks(lines, call: Call, state: StreamState):
    """Forward OpenAI's SSE unchanged (as bytes), noting usage and text; drop the usage chunk unless asked for."""
    for payload in iter_sse_data(lines):
        if payload == b"[DONE]":
            state.finished = True
            return
        chunk = json.loads(payload)
        if chunk.get("usage"):
            state.usage = usage_from(chunk["usage"])
            if not chunk.get("choices") and not call.include_usage:
                continue
        for choice in chunk.get("choices") or ():
            state.saw_text((choice.get("delta") or {}).get("content"))
        yield payload


def embeddings_to_upstream(call: Call) -> Upstream:
    body = dict(call.body)
    body["model"] = call.upstream_model
    return Upstream("POST", f"{call.base_url}/embeddings", _headers(call.secret), body)


def embeddings_from_upstream(data: dict, call: Call) -> tuple[dict, Usage]:
    usage = data.get("usage") or {}
    return data, Usage(prompt_tokens=usage.get("prompt_tokens") or 0, reported=bool(usage))


def check_key(base_url: str, secret: str) -> Upstream:
    return Upstream("GET", f"{base_url}/models", _headers(secret))


def error_info(data) -> ErrorInfo:
    error = (data or {}).get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorInfo()
    return ErrorInfo(error.get("type"), error.get("code"), error.get("param"))
