"""OpenAI and every OpenAI-compatible server: the body passes through with the model renamed.

One exception: tool call ids a Gemini 3 model made carry its signature (``<id>_sig_<signature>``,
see ``gemini.py``) and are longer than OpenAI takes (40 characters); a conversation that moves
here from Gemini goes with the signature cut from its ids, alike where the calls and their
results name them, so they still pair.
"""

import json

from .base import Call, ErrorInfo, StreamState, Upstream, Usage, iter_sse_data


def _headers(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}


SIGNATURE = "_sig_"


def _unsigned(call_id):
    return call_id.partition(SIGNATURE)[0] if isinstance(call_id, str) else call_id


def _without_signatures(messages: list) -> list:
    """The messages with Gemini's signatures cut from their tool call ids; those without any, as they are."""
    result = []
    for message in messages:
        if message.get("role") == "tool" and SIGNATURE in str(message.get("tool_call_id")):
            message = {**message, "tool_call_id": _unsigned(message["tool_call_id"])}
        elif message.get("role") == "assistant" and message.get("tool_calls"):
            calls = [{**call, "id": _unsigned(call.get("id"))} for call in message["tool_calls"]]
            message = {**message, "tool_calls": calls}
        result.append(message)
    return result


def to_upstream(call: Call) -> Upstream:
    body = dict(call.body)
    body["model"] = call.upstream_model
    messages = body.get("messages") or ()
    # Only a conversation with tool results can carry signed ids: the pass-through pays nothing otherwise.
    if any(m.get("role") == "tool" and SIGNATURE in str(m.get("tool_call_id")) for m in messages):
        body["messages"] = _without_signatures(messages)
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
