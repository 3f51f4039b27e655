"""Anthropic's Messages API, spoken in OpenAI's terms both ways.

``reasoning_effort`` turns Claude's thinking on: a token budget on Claude 4.5 and
earlier, adaptive thinking steered by ``output_config.effort`` on 4.6 and later,
which refuse a budget; ``none`` asks for no thinking, leaving the model's default.
The thinking blocks of the answer are not passed on; their
tokens are in ``output_tokens``. Anthropic wants a turn's thinking back, signed,
beside the tool calls it led to, and AURA keeps nothing between calls: a request
that answers tool calls is sent without thinking.

Not sent, as Anthropic has no such setting: ``presence_penalty``,
``frequency_penalty`` and ``seed`` (frameworks send the penalties by default, so
a refusal would break them). ``logprobs`` is refused: Claude gives none.
"""

import json
import re
import time

from .base import (
    AdapterError,
    Call,
    ErrorInfo,
    StreamState,
    Upstream,
    UpstreamStreamError,
    Usage,
    finish_chunk_base,
    iter_sse,
    reasoning_effort,
    text_of,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOO_LONG = re.compile(r"prompt is too long", re.IGNORECASE)
# A model's generation in its id: claude-sonnet-4-5(-20250929) is 4.5, claude-opus-5 is 5.0.
_VERSION = re.compile(r"claude-[a-z]+-(\d+)(?:-(\d{1,2})(?!\d))?")
ADAPTIVE_FROM = (4, 6)
# Thinking budgets (tokens) per OpenAI effort; Anthropic takes no budget under 1,024.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# The effort levels every adaptive model takes; OpenAI's outer ones fold into the nearest.
ADAPTIVE_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}


def _headers(secret: str) -> dict:
    return {"x-api-key": secret, "anthropic-version": API_VERSION, "content-type": "application/json"}


def _image(part: dict) -> dict:
    url = (part.get("image_url") or {}).get("url", "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text" and not part.get("text"):
            continue  # Anthropic refuses an empty text block, which OpenAI takes
        if kind == "text":
            block = {"type": "text", "text": part["text"]}
        elif kind == "image_url":
            block = _image(part)
        else:
            raise AdapterError(f"Anthropic models cannot take content parts of type {kind!r}.", "messages")
        if part.get("cache_control"):
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _messages(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split out the system prompt and fold OpenAI's roles into Anthropic's alternating turns."""
    system: list[dict] = []
    turns: list[dict] = []

    def add(role, blocks):
        if not blocks:  # Anthropic refuses an empty turn, which OpenAI takes in history
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
        elif role == "user":
            add("user", _blocks(message.get("content")))
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    raise AdapterError("A tool call's arguments are not valid JSON.", "messages") from None
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
            add("assistant", blocks)
        elif role in ("tool", "function"):
            add(
                "user",
                [{"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text_of(message.get("content"))}],
            )
    return system, turns


def _tool_choice(choice, parallel) -> dict | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        result = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        result = {"type": {"required": "any", "none": "none"}.get(choice, "auto")}
    if parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def _adaptive(model: str) -> bool:
    """Claude 4.6 and later think adaptively; 4.7 and later refuse a thinking budget."""
    match = _VERSION.search(model)
    return match is not None and (int(match[1]), int(match[2] or 0)) >= ADAPTIVE_FROM


def _answers_tool_calls(turns: list[dict]) -> bool:
    return any(block.get("type") == "tool_result" for block in turns[-1]["content"])


def _check_thinkable(body: dict, upstream: dict) -> None:
    """Refuse, naming the param, what Anthropic refuses beside thinking: a temperature other than 1,
    a top_p under 0.95, and a forced tool call."""
    if body.get("temperature") is not None and float(body["temperature"]) != 1:
        raise AdapterError("Claude models think only at temperature 1: leave temperature out with reasoning_effort.", "temperature")
    if not 0.95 <= upstream.get("top_p", 1) <= 1:
        raise AdapterError("Claude models think only with top_p between 0.95 and 1.", "top_p")
    if (upstream.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise AdapterError("Claude models cannot think when tool_choice forces a tool call: use auto or none.", "tool_choice")


def _think(call: Call, upstream: dict) -> None:
    """Ask Claude to think as hard as ``reasoning_effort`` says, where Anthropic allows it."""
    effort = reasoning_effort(call, "anthropic")
    if effort in (None, "none") or _answers_tool_calls(upstream["messages"]):
        return
    body = call.body
    _check_thinkable(body, upstream)
    if _adaptive(call.upstream_model):
        upstream["thinking"] = {"type": "adaptive"}
        upstream["output_config"] = {"effort": ADAPTIVE_EFFORTS[effort]}
        return
    # The budget comes out of max_tokens and must be less than it.
    budget = THINKING_BUDGETS[effort]
    param = "max_completion_tokens" if body.get("max_completion_tokens") else "max_tokens" if body.get("max_tokens") else None
    if param is None:
        upstream["max_tokens"] = max(upstream["max_tokens"], budget + DEFAULT_MAX_TOKENS)
    elif upstream["max_tokens"] <= budget:
        raise AdapterError(
            f"{param} must be more than the {budget} tokens Claude thinks with at reasoning_effort '{effort}'.",
            param,
        )
    upstream["thinking"] = {"type": "enabled", "budget_tokens": budget}


# Anthropic caches prefixes of at least this many tokens (2,048 for Haiku models).
MIN_CACHEABLE = {"haiku": 2048}
DEFAULT_MIN_CACHEABLE = 1024
EPHEMERAL = {"type": "ephemeral"}


def _has_cache_control(body: dict) -> bool:
    for message in body.get("messages") or ():
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("cache_control") for p in content):
            return True
    return any(t.get("cache_control") for t in body.get("tools") or () if isinstance(t, dict))


def _place_breakpoints(upstream: dict, model: str) -> bool:
    """Mark tools, system and the stable history (all but the newest turn) as cacheable: at most 4 marks."""
    size = (
        len(json.dumps(upstream.get("tools", [])))
        + len(json.dumps(upstream.get("system", [])))
        + len(json.dumps(upstream["messages"][:-1]))
    )
    minimum = next((n for word, n in MIN_CACHEABLE.items() if word in model), DEFAULT_MIN_CACHEABLE)
    if size // 4 < minimum:
        return False
    placed = False
    if upstream.get("tools"):
        upstream["tools"][-1] = {**upstream["tools"][-1], "cache_control": EPHEMERAL}
        placed = True
    if upstream.get("system"):
        upstream["system"][-1] = {**upstream["system"][-1], "cache_control": EPHEMERAL}
        placed = True
    history = upstream["messages"][:-1]
    if history and history[-1]["content"]:
        last = history[-1]["content"]
        last[-1] = {**last[-1], "cache_control": EPHEMERAL}
        placed = True
    return placed


def to_upstream(call: Call) -> Upstream:
    body = call.body
    if (body.get("n") or 1) > 1:
        raise AdapterError("Anthropic models return one choice: n must be 1.", "n")
    if body.get("logprobs"):
        raise AdapterError("Anthropic models give no log probabilities: leave logprobs out.", "logprobs")
    system, turns = _messages(body["messages"])
    if not turns:  # Anthropic refuses it with a bare 400; say why before the call
        raise AdapterError("Anthropic models need at least one user message besides the system prompt.", "messages")
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        # Anthropic has no JSON mode switch; the instruction is the documented way to ask for it.
        schema = (fmt.get("json_schema") or {}).get("schema")
        rule = "Respond with a single JSON object and nothing else."
        if schema:
            rule += " It must match this JSON schema: " + json.dumps(schema, separators=(",", ":"))
        system.append({"type": "text", "text": rule})
    upstream = {
        "model": call.upstream_model,
        "messages": turns,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or call.max_output_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        upstream["system"] = system
    # Current Claude models refuse temperature and top_p together: temperature is the one kept.
    if body.get("temperature") is not None:
        upstream["temperature"] = min(float(body["temperature"]), 1.0)
    elif body.get("top_p") is not None:
        upstream["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        upstream["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        upstream["tools"] = [
            {
                "name": tool["function"]["name"],
                "description": tool["function"].get("description", ""),
                "input_schema": tool["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in body["tools"]
        ]
    tool_choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if tool_choice and body.get("tools"):
        upstream["tool_choice"] = tool_choice
    if body.get("user"):
        upstream["metadata"] = {"user_id": str(body["user"])[:256]}
    _think(call, upstream)
    if call.stream:
        upstream["stream"] = True
    if call.steer_cache and not _has_cache_control(body):
        call.steered = _place_breakpoints(upstream, call.upstream_model)
    return Upstream("POST", f"{call.base_url}/v1/messages", _headers(call.secret), upstream)


def usage_from(data: dict | None) -> Usage:
    data = data or {}
    read = data.get("cache_read_input_tokens") or 0
    write = data.get("cache_creation_input_tokens") or 0
    return Usage(
        prompt_tokens=(data.get("input_tokens") or 0) + read + write,
        cached_tokens=read,
        cache_write_tokens=write,
        completion_tokens=data.get("output_tokens") or 0,
        reported=bool(data),
    )


def from_upstream(data: dict, call: Call) -> tuple[dict, Usage]:
    text, tool_calls = [], []
    for block in data.get("content") or ():
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})},
                }
            )
    message = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = usage_from(data.get("usage"))
    response = {
        "id": "chatcmpl-" + str(data.get("id", "")).removeprefix("msg_"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("model") or call.upstream_model,
        "choices": [{"index": 0, "message": message, "finish_reason": STOP_REASONS.get(data.get("stop_reason"), "stop"), "logprobs": None}],
        "usage": usage.as_openai(),
    }
    return response, usage


def stream_chunks(lines, call: Call, state: StreamState):
    """Translate Anthropic's event stream into OpenAI chunks as they arrive."""
    base = None
    tool_index: dict[int, int] = {}
    no_arguments: set[int] = set()  # tool_use blocks no argument text has come for yet
    input_usage = {}
    for event, payload in iter_sse(lines):
        data = json.loads(payload)
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            input_usage = message.get("usage") or {}
            state.input_usage = usage_from(input_usage) if input_usage else None
            base = finish_chunk_base(
                "chatcmpl-" + str(message.get("id", "")).removeprefix("msg_"),
                int(time.time()),
                message.get("model") or call.upstream_model,
            )
            yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                no_arguments.add(data.get("index", 0))
                index = tool_index.setdefault(data.get("index", 0), len(tool_index))
                delta = {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": block.get("id"),
                            "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""},
                        }
                    ]
                }
                yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                state.saw_text(delta.get("text"))
                yield {**base, "choices": [{"index": 0, "delta": {"content": delta.get("text", "")}, "finish_reason": None}]}
            elif delta.get("type") == "input_json_delta":
                if delta.get("partial_json"):
                    no_arguments.discard(data.get("index", 0))
                index = tool_index.get(data.get("index", 0), 0)
                state.saw_text(delta.get("partial_json"))
                out = {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                yield {**base, "choices": [{"index": 0, "delta": out, "finish_reason": None}]}
        elif kind == "content_block_stop" and data.get("index", 0) in no_arguments:
            # A call without arguments streams none; the client would be left with "" where "{}" belongs.
            no_arguments.discard(data.get("index", 0))
            out = {"tool_calls": [{"index": tool_index[data.get("index", 0)], "function": {"arguments": "{}"}}]}
            yield {**base, "choices": [{"index": 0, "delta": out, "finish_reason": None}]}
        elif kind == "message_delta":
            state.usage = usage_from({**input_usage, **(data.get("usage") or {})})
            reason = STOP_REASONS.get((data.get("delta") or {}).get("stop_reason"), "stop")
            yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
        elif kind == "message_stop":
            state.finished = True
            if call.include_usage:
                yield {**base, "usage": state.usage.as_openai()}
            return
        elif kind == "error":
            raise UpstreamStreamError((data.get("error") or {}).get("type") or "stream_error")


def embeddings_to_upstream(call: Call) -> Upstream:
    raise AdapterError("Anthropic has no embeddings models.", "model")


def check_key(base_url: str, secret: str) -> Upstream:
    return Upstream("GET", f"{base_url}/v1/models", _headers(secret))


def error_info(data) -> ErrorInfo:
    """The message is read only to tell a prompt over the context window; it never leaves here."""
    error = (data or {}).get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorInfo()
    kind = error.get("type")
    if kind == "invalid_request_error" and _TOO_LONG.search(str(error.get("message") or "")):
        return ErrorInfo(kind, "context_length_exceeded", "messages")
    return ErrorInfo(kind)
