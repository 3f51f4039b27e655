"""Google Gemini's generateContent API, spoken in OpenAI's terms both ways.

The key travels in the ``x-goog-api-key`` header, never in the URL, where a
proxy or access log could keep it.

Gemini 3 and later sign each function call (``thoughtSignature``) and refuse a
replayed call without its signature. AURA keeps nothing between calls, so the
signature travels in the tool call's id, which every client sends back.

``reasoning_effort`` becomes ``thinkingConfig``: a ``thinkingLevel`` for Gemini 3
and later (the levels a model takes are its own to refuse), a ``thinkingBudget``
for 2.5. Log probabilities come back in OpenAI's shape in unstreamed answers.
"""

import base64
import hashlib
import json
import math
import mimetypes
import re
import struct
import time
from urllib.parse import urlsplit

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

# Gemini's finish reasons for an answer it filtered; the others (OTHER, LANGUAGE,
# MALFORMED_FUNCTION_CALL, TOO_MANY_TOOL_CALLS, ...) end an answer without filtering it.
FILTERED = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII")
FILTERED += ("IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION")
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(FILTERED, "content_filter")}
# JSON-schema keywords Gemini's schema subset rejects ($defs and definitions are inlined where referred to).
_SCHEMA_DROP = {"additionalProperties", "$schema", "strict", "$defs", "definitions"}
# Keywords whose value is a schema or a list of schemas ("properties" maps names to schemas).
_SCHEMA_NESTED = {"items", "prefixItems", "anyOf", "oneOf", "allOf", "not"}
# The signature Gemini documents for a function call it did not sign (history from another model).
UNSIGNED = "skip_thought_signature_validator"
_SIGNED_ID = re.compile(r"call_[0-9a-f]{24}_sig_([A-Za-z0-9_-]+)")
_TO_URLSAFE = str.maketrans("+/", "-_")
_FROM_URLSAFE = str.maketrans("-_", "+/")
_TOO_LONG = re.compile(r"input token count.*exceeds the maximum", re.IGNORECASE | re.DOTALL)
_DELAY = re.compile(r"(\d+(?:\.\d+)?)s")
# Gemini 2.5's thinking budgets (tokens) per OpenAI effort, within every 2.5 model's range
# (Pro 128-32768, Flash 0-24576, Flash-Lite 512-24576); 0 turns thinking off, which Pro cannot.
THINKING_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
# Gemini 3 and later: thinking cannot be turned off, and "minimal" is the least of it.
THINKING_LEVELS = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
# OpenAI's sampling parameters Gemini takes under its own names.
SAMPLING = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
)


def _headers(secret: str) -> dict:
    return {"x-goog-api-key": secret, "Content-Type": "application/json"}


# Deeper than any schema a model is given in practice, and far from Python's recursion limit.
_SCHEMA_DEPTH = 64
# More $ref expansions than a real schema has; a few refs to refs could otherwise expand without end.
_SCHEMA_INLINED = 1000


def _schema(schema, param: str):
    """The schema in Gemini's subset: refs to its own $defs inlined, the keywords Gemini rejects dropped.

    Keywords are dropped only where they are keywords: a property may well be named ``strict``.
    Pydantic models (``client.beta.chat.completions.parse``) put nested models under ``$defs``.
    """
    defs = {}
    if isinstance(schema, dict):
        for keyword in ("$defs", "definitions"):
            if isinstance(schema.get(keyword), dict):
                defs.update({f"#/{keyword}/{name}": sub for name, sub in schema[keyword].items()})
    inlined = 0

    def walk(node, refs: tuple, depth: int):
        nonlocal inlined
        if depth > _SCHEMA_DEPTH:
            raise AdapterError(f"This JSON schema is nested more than {_SCHEMA_DEPTH} levels deep, more than Gemini models take.", param)
        if isinstance(node, list):
            return [walk(sub, refs, depth + 1) for sub in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if ref in refs:
                raise AdapterError("This JSON schema is recursive (a $ref refers back to itself): Gemini models take none.", param)
            if not isinstance(ref, str) or not isinstance(defs.get(ref), dict):
                raise AdapterError("This JSON schema has a $ref outside its own $defs, which Gemini models cannot follow.", param)
            inlined += 1
            if inlined > _SCHEMA_INLINED:
                raise AdapterError(f"This JSON schema uses $ref more than {_SCHEMA_INLINED} times, more than Gemini models take.", param)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return walk({**defs[ref], **siblings}, (*refs, ref), depth + 1)
        result = {}
        for key, value in node.items():
            if key in _SCHEMA_DROP:
                continue
            if key == "properties" and isinstance(value, dict):
                value = {name: walk(sub, refs, depth + 1) for name, sub in value.items()}
            elif key in _SCHEMA_NESTED:
                value = walk(value, refs, depth + 1)
            result[key] = value
        return result

    return walk(schema, (), 0)


def _generation(model: str) -> int:
    match = re.search(r"gemini-(\d+)", model)
    return int(match[1]) if match else 0


def _signs_calls(model: str) -> bool:
    """Gemini 3 and later refuse a replayed function call without its thought signature."""
    return _generation(model) >= 3


def _thinking_config(call: Call) -> dict | None:
    effort = reasoning_effort(call, "gemini")
    if effort is None:
        return None
    if _generation(call.upstream_model) >= 3:
        return {"thinkingLevel": THINKING_LEVELS[effort]}
    if effort == "none" and "-pro" in call.upstream_model:
        raise AdapterError("Gemini 2.5 Pro cannot turn thinking off: use a reasoning_effort of 'minimal' or more.", "reasoning_effort")
    return {"thinkingBudget": THINKING_BUDGETS[effort]}


def _signed_id(call_id: str, signature: str | None) -> str:
    """The tool call id with the call's signature in it (URL-safe, as ids must be), for the replay."""
    if not signature:
        return call_id
    return f"{call_id}_sig_{signature.translate(_TO_URLSAFE).rstrip('=')}"


def _signature(call_id) -> str | None:
    """The signature ``_signed_id`` put into a tool call id, in the base64 Gemini sent it in."""
    match = _SIGNED_ID.fullmatch(call_id or "")
    if match is None:
        return None
    packed = match[1].translate(_FROM_URLSAFE)
    return packed + "=" * (-len(packed) % 4)


def _parts(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content:
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                parts.append({"inlineData": {"mimeType": header[5:].split(";")[0] or "image/png", "data": data}})
            else:  # Gemini fetches public and signed https URLs itself; a wildcard type is not one it takes
                file_data = {"fileUri": url}
                guessed = mimetypes.guess_type(urlsplit(url).path)[0]
                if guessed and guessed.startswith("image/"):
                    file_data["mimeType"] = guessed
                parts.append({"fileData": file_data})
        else:
            raise AdapterError(f"Gemini models cannot take content parts of type {part.get('type')!r}.", "messages")
    return parts


def _function_call(call: dict) -> dict:
    function = call.get("function") or {}
    try:
        args = json.loads(function.get("arguments") or "{}")
    except json.JSONDecodeError:
        raise AdapterError("A tool call's arguments are not valid JSON.", "messages") from None
    part = {"functionCall": {"name": function.get("name"), "args": args}}
    signature = _signature(call.get("id"))
    if signature:
        part["thoughtSignature"] = signature
    return part


def _contents(messages: list[dict], signed: bool) -> tuple[list[dict], list[dict]]:
    """The system instruction and the turns; ``signed``: the model refuses function calls without a signature."""
    system, contents = [], []
    names: dict[str, str] = {}

    def add(role, parts):
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": list(parts)})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content")))
        elif role == "user":
            add("user", _parts(message.get("content")))
        elif role == "assistant":
            calls = message.get("tool_calls") or ()
            names.update((call.get("id"), (call.get("function") or {}).get("name")) for call in calls)
            function_calls = [_function_call(call) for call in calls]
            # Gemini checks the first call of each step; one it never signed (another model's) passes with this.
            if signed and function_calls and "thoughtSignature" not in function_calls[0]:
                function_calls[0]["thoughtSignature"] = UNSIGNED
            parts = _parts(message.get("content")) + function_calls
            if parts:  # Gemini refuses an empty model turn, which OpenAI takes in history
                add("model", parts)
        elif role in ("tool", "function"):
            name = names.get(message.get("tool_call_id")) or message.get("name") or "tool"
            add("user", [{"functionResponse": {"name": name, "response": {"content": text_of(message.get("content"))}}}])
    return system, contents


def _tool_config(choice) -> dict | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [(choice.get("function") or {}).get("name")]}}
    return {"functionCallingConfig": {"mode": {"required": "ANY", "none": "NONE"}.get(choice, "AUTO")}}


def to_upstream(call: Call) -> Upstream:
    body = call.body
    system, contents = _contents(body["messages"], _signs_calls(call.upstream_model))
    if not contents:  # Gemini refuses it with a bare 400; say why before the call
        raise AdapterError("Gemini models need at least one user message besides the system instruction.", "messages")
    config = {}
    for source, target in SAMPLING:
        if body.get(source) is not None:
            config[target] = body[source]
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        if body.get("top_logprobs") is not None:
            config["logprobs"] = body["top_logprobs"]
    thinking = _thinking_config(call)
    if thinking:
        config["thinkingConfig"] = thinking
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    if (body.get("n") or 1) > 1:
        config["candidateCount"] = body["n"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseSchema"] = _schema(schema, "response_format")
    upstream: dict = {"contents": contents}
    if system:
        upstream["systemInstruction"] = {"parts": system}
    if config:
        upstream["generationConfig"] = config
    if body.get("tools"):
        declarations = []
        for tool in body["tools"]:
            function = tool["function"]
            declaration = {"name": function["name"], "description": function.get("description", "")}
            if function.get("parameters"):
                declaration["parameters"] = _schema(function["parameters"], "tools")
            declarations.append(declaration)
        upstream["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config:
            upstream["toolConfig"] = tool_config
    method = "streamGenerateContent?alt=sse" if call.stream else "generateContent"
    return Upstream("POST", f"{call.base_url}/v1beta/models/{call.upstream_model}:{method}", _headers(call.secret), upstream)


def usage_from(meta: dict | None) -> Usage:
    meta = meta or {}
    thoughts = meta.get("thoughtsTokenCount") or 0
    return Usage(
        prompt_tokens=meta.get("promptTokenCount") or 0,
        cached_tokens=meta.get("cachedContentTokenCount") or 0,
        completion_tokens=(meta.get("candidatesTokenCount") or 0) + thoughts,
        reasoning_tokens=thoughts,
        reported=bool(meta),
    )


def _choice_parts(candidate: dict, call_ids) -> tuple[str, list[dict]]:
    text, tool_calls = [], []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "text" in part and not part.get("thought"):
            text.append(part["text"])
        elif "functionCall" in part:
            function = part["functionCall"]
            tool_calls.append(
                {
                    "id": _signed_id(next(call_ids), part.get("thoughtSignature")),
                    "type": "function",
                    "function": {"name": function.get("name"), "arguments": json.dumps(function.get("args") or {})},
                }
            )
    return "".join(text), tool_calls


def _logprobs(result: dict | None) -> dict | None:
    """Gemini's ``logprobsResult`` in OpenAI's shape: each chosen token, with the most likely ones at its step."""
    if not result:
        return None

    def entry(candidate: dict) -> dict:
        token = candidate.get("token", "")
        return {"token": token, "logprob": candidate.get("logProbability", 0.0), "bytes": list(token.encode())}

    chosen = result.get("chosenCandidates") or []
    tops = [step.get("candidates") or [] for step in result.get("topCandidates") or ()]
    tops += [[]] * (len(chosen) - len(tops))  # no alternatives asked for (top_logprobs 0)
    content = [{**entry(token), "top_logprobs": [entry(c) for c in top]} for token, top in zip(chosen, tops, strict=False)]
    return {"content": content, "refusal": None}


def _finish(candidate: dict, tool_calls) -> str | None:
    reason = candidate.get("finishReason")
    if reason is None:
        return None
    if tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(reason, "stop")


def _blocked(data: dict) -> bool:
    """Gemini refused the prompt itself: no candidates, and ``promptFeedback`` says why."""
    return not data.get("candidates") and bool((data.get("promptFeedback") or {}).get("blockReason"))


def _ids(seed: str):
    n = 0
    while True:
        yield f"call_{hashlib.sha256(f'{seed}:{n}'.encode()).hexdigest()[:24]}"
        n += 1


def from_upstream(data: dict, call: Call) -> tuple[dict, Usage]:
    response_id = data.get("responseId") or hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]
    call_ids = _ids(response_id)
    choices = []
    for index, candidate in enumerate(data.get("candidates") or ()):
        text, tool_calls = _choice_parts(candidate, call_ids)
        message = {"role": "assistant", "content": text if text or not tool_calls else None, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        finish = _finish(candidate, tool_calls) or "stop"
        logprobs = _logprobs(candidate.get("logprobsResult"))
        choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs})
    if _blocked(data):  # as OpenAI answers a prompt its filter stops: one empty choice
        message = {"role": "assistant", "content": "", "refusal": None}
        choices.append({"index": 0, "message": message, "finish_reason": "content_filter", "logprobs": None})
    usage = usage_from(data.get("usageMetadata"))
    response = {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": data.get("modelVersion") or call.upstream_model,
        "choices": choices,
        "usage": usage.as_openai(),
    }
    return response, usage


def stream_chunks(lines, call: Call, state: StreamState):
    base = None
    call_ids = None
    tool_counts: dict[int, int] = {}
    introduced = {0}  # the choices whose role has been sent (the first chunk sends choice 0's)
    for _event, payload in iter_sse(lines):
        data = json.loads(payload)
        if "error" in data:
            raise UpstreamStreamError((data["error"] or {}).get("status") or "stream_error")
        if base is None:
            response_id = data.get("responseId") or hashlib.sha256(payload.encode()).hexdigest()[:24]
            call_ids = _ids(response_id)
            base = finish_chunk_base(f"chatcmpl-{response_id}", int(time.time()), data.get("modelVersion") or call.upstream_model)
            yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        if data.get("usageMetadata"):
            state.usage = usage_from(data["usageMetadata"])
        if _blocked(data):
            yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]}
        for index, candidate in enumerate(data.get("candidates") or ()):
            index = candidate.get("index", index)
            text, tool_calls = _choice_parts(candidate, call_ids)
            delta = {}
            if text:
                delta["content"] = text
                state.saw_text(text)
            if tool_calls:
                first = tool_counts.get(index, 0)
                delta["tool_calls"] = [{"index": first + i, **tc} for i, tc in enumerate(tool_calls)]
                tool_counts[index] = first + len(tool_calls)
            finish = _finish(candidate, tool_counts.get(index))
            if index not in introduced:  # as OpenAI streams n > 1: each choice's first delta names its role
                introduced.add(index)
                delta = {"role": "assistant", **delta}
            if delta or finish:
                yield {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    state.finished = True
    if call.include_usage and base is not None:
        yield {**base, "usage": state.usage.as_openai()}


def embeddings_to_upstream(call: Call) -> Upstream:
    inputs = call.body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
        raise AdapterError("Gemini embeddings take text input: a string or a list of strings.", "input")
    model = f"models/{call.upstream_model}"
    requests = [{"model": model, "content": {"parts": [{"text": text}]}} for text in inputs]
    if call.body.get("dimensions"):
        for request in requests:
            request["outputDimensionality"] = call.body["dimensions"]
    return Upstream("POST", f"{call.base_url}/v1beta/{model}:batchEmbedContents", _headers(call.secret), {"requests": requests})


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def embeddings_from_upstream(data: dict, call: Call) -> tuple[dict, Usage]:
    vectors = [item.get("values") or [] for item in data.get("embeddings") or ()]
    if call.body.get("dimensions"):
        # Gemini normalises only full-size embeddings; a shortened one comes back as cut. OpenAI's are unit vectors.
        vectors = [_unit(v) for v in vectors]
    if call.body.get("encoding_format") == "base64":
        # What the OpenAI SDK asks for by default: little-endian float32, base64-encoded.
        vectors = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
    response = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": call.upstream_model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    return response, Usage()


def check_key(base_url: str, secret: str) -> Upstream:
    return Upstream("GET", f"{base_url}/v1beta/models?pageSize=1", _headers(secret))


def error_info(data) -> ErrorInfo:
    """The message is read only to tell a prompt over the context window; it never leaves here."""
    error = (data or {}).get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorInfo()
    status = error.get("status")
    if status == "INVALID_ARGUMENT" and _TOO_LONG.search(str(error.get("message") or "")):
        return ErrorInfo(status, "context_length_exceeded", "messages")
    details = [d for d in error.get("details") or () if isinstance(d, dict)]
    reasons = [d["reason"] for d in details if d.get("reason")]
    return ErrorInfo(status, reasons[0] if reasons else None, None, _retry_after(details))


def _retry_after(details: list[dict]) -> int | None:
    """Whole seconds, rounded up, from a google.rpc.RetryInfo detail ("retryDelay": "39s")."""
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = _DELAY.fullmatch(str(detail.get("retryDelay") or ""))
            return math.ceil(float(delay[1])) if delay else None
    return None
