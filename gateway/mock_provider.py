"""A stand-in for the OpenAI, Anthropic and Gemini HTTP APIs, for tests and local runs.

It speaks each provider's wire format (response bodies, SSE event sequences, usage
fields, error shapes) closely enough that the official clients parse it, and lets a
test steer it through the last user message:

- ``ECHO: <text>`` makes ``<text>`` the reply; otherwise it is ``Mock reply to <N> messages.``
- ``CALL_TOOL`` (with tools in the request) answers with a call to the first tool;
  ``CALL_TOOL_NO_ARGS`` calls it with no arguments;
- ``FAIL_500``, ``FAIL_429``, ``FAIL_TIMEOUT`` (30 s of silence) and ``FAIL_ECHO`` (a 400 whose
  message quotes the prompt) fail on demand; ``FAIL_CONTEXT`` is the provider's refusal of a
  prompt longer than the context window (Anthropic, Gemini);
- ``FINISH_REASON:<REASON>`` ends the answer with that stop or finish reason (Anthropic, Gemini);
- ``BLOCK_PROMPT`` makes Gemini block the prompt (``promptFeedback``, no candidates);
- ``REDACTED_THINKING`` makes a thinking Claude answer with a ``redacted_thinking`` block.

OpenAI refuses a tool call id longer than 40 characters, and a tool message that answers no call
before it.

Gemini refuses a ``thinkingConfig`` its model does not take (a level before Gemini 3, a level and
a budget together, a budget out of the 2.5 model's range) and ``logprobs`` without
``responseLogprobs``; with ``responseLogprobs`` an unstreamed answer carries ``logprobsResult``.

Like the real APIs, Anthropic refuses ``temperature`` with ``top_p``, an empty turn and an empty
text block, Gemini refuses an empty turn, and Gemini 3 and later models sign their function calls
(``thoughtSignature``) and refuse a replayed call whose signature is missing or not theirs.
A Claude asked to think (``thinking``) answers with a thinking block first, and refuses what
Anthropic refuses beside thinking: a budget on Claude 4.7 and later, adaptive thinking before
4.6, a budget under 1,024 or not under ``max_tokens``, ``temperature`` other than 1, ``top_k``,
``top_p`` under 0.95, a forced tool call, and tool results after a turn without its thinking.

:meth:`MockProvider.fail_next` queues failures, ``fail_rate`` fails at random, and every
request is kept in :attr:`MockProvider.requests` so a test can see what reached "upstream".

Nothing is logged per request: request bodies carry prompts.
"""

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_PORT = 8900
ECHO_MARKER = "ECHO:"
TOOL_MARKER = "CALL_TOOL"
NO_ARGUMENTS_MARKER = "CALL_TOOL_NO_ARGS"
CONTEXT_MARKER = "FAIL_CONTEXT"
BLOCK_MARKER = "BLOCK_PROMPT"
REDACTED_MARKER = "REDACTED_THINKING"
CLAUDE_VERSION = re.compile(r"claude-[a-z]+-(\d+)(?:-(\d{1,2})(?!\d))?")
ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
MIN_THINKING_BUDGET = 1024
GEMINI_THINKING_LEVELS = ("minimal", "low", "medium", "high")
# Gemini 2.5's thinking budget ranges; -1 (dynamic) goes everywhere, and 0 (off) everywhere but Pro.
GEMINI_THINKING_BUDGETS = {"flash-lite": (512, 24576), "flash": (1, 24576), "pro": (128, 32768)}
GEMINI_MAX_LOGPROBS = 20
OPENAI_MAX_TOOL_CALL_ID = 40
FINISH_MARKER = re.compile(r"FINISH_REASON:(\w+)")
TOOL_ARGUMENTS = {"q": "mock"}
EMBEDDING_DIMENSIONS = 8
FAIL_TIMEOUT_SECONDS = 30.0
RETRY_AFTER_SECONDS = "1"
GEMINI_CONTEXT_WINDOW = 1048576
# Gemini's documented stand-in for a function call it did not sign.
UNSIGNED = "skip_thought_signature_validator"
# gemini-embedding-001's full size: only full-size embeddings come back normalised.
GEMINI_EMBEDDING_SIZE = 3072
# OpenAI caches prompts of 1024+ tokens and reports hits in 128-token steps.
PREFIX_CACHE_MIN_TOKENS = 1024
OPENAI_CACHE_STEP = 128
PREFIX_CACHE_HISTORY = 64  # earlier prompts remembered per key and model
IDLE_CONNECTION_SECONDS = 60
STOP_POLL_SECONDS = 0.05

OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")
GEMINI_MODELS = (
    ("gemini-2.0-flash", ("generateContent", "streamGenerateContent", "countTokens")),
    ("gemini-2.5-pro", ("generateContent", "streamGenerateContent", "countTokens")),
    ("text-embedding-004", ("embedContent", "batchEmbedContents")),
)


# --- shared vocabulary ------------------------------------------------------


class ProviderError(Exception):
    """A failure to report in the shape of whichever provider the request was for."""

    def __init__(self, status: int, message: str | None = None, *, code: str | None = None, headers: dict | None = None):
        super().__init__(message or HTTPStatus(status).phrase)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


@dataclass
class Call:
    """One request as the providers see it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    """A streamed answer: each item of ``events`` is one framed event, sent and flushed on its own."""

    events: Iterable[bytes]
    content_type: str = "text/event-stream; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What the mock "model" says: words of text, or a call to a tool."""

    pieces: tuple[str, ...] = ()  # one word each, leading whitespace kept, so "".join() is the text
    truncated: bool = False  # cut short by the request's output-token limit
    tool_name: str | None = None
    no_arguments: bool = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def input(self) -> dict:
        return {} if self.no_arguments else dict(TOOL_ARGUMENTS)

    @property
    def arguments(self) -> str:
        return json.dumps(self.input, separators=(",", ":"))

    @property
    def tokens(self) -> int:
        if self.tool_name:
            return estimate_tokens(self.tool_name + self.arguments)
        return len(self.pieces)


def estimate_tokens(text: str) -> int:
    """The mock's tokenizer: about four characters a token, never zero."""
    return max(1, len(text) // 4)


def split_words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text)


def split_json(arguments: str) -> list[str]:
    # Providers stream tool arguments in token-sized fragments: '{"', 'q', '":"', 'mock', '"}'.
    return re.findall(r'[{}\[\],:"]+|[^{}\[\],:"]+', arguments)


def make_answer(user_text: str, message_count: int, tool_name: str | None, max_tokens: int | None) -> Answer:
    if tool_name and TOOL_MARKER in user_text:
        return Answer(tool_name=tool_name, no_arguments=NO_ARGUMENTS_MARKER in user_text)
    if ECHO_MARKER in user_text:
        text = user_text.split(ECHO_MARKER, 1)[1].strip()
    else:
        text = f"Mock reply to {message_count} messages."
    pieces = split_words(text)
    truncated = max_tokens is not None and len(pieces) > max_tokens
    return Answer(tuple(pieces[:max_tokens] if truncated else pieces), truncated)


def forced_finish(user_text: str) -> str | None:
    """The stop or finish reason a ``FINISH_REASON:<REASON>`` marker asks for."""
    match = FINISH_MARKER.search(user_text)
    return match[1] if match else None


def embedding(item: Any, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector derived from a hash of the input, so equal inputs embed equally."""
    seed = json.dumps(item, sort_keys=True).encode()
    raw = b""
    while len(raw) < 4 * dimensions:
        seed = hashlib.sha256(seed).digest()
        raw += seed
    values = [(number / 0xFFFFFFFF) * 2 - 1 for number in struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])]
    norm = sum(value * value for value in values) ** 0.5 or 1.0
    return [round(value / norm, 6) for value in values]


def text_of(content: Any) -> str:
    """The text in a message's content: a string, or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def sse(data: Any, *, event: str | None = None, newline: str = "\n") -> bytes:
    lines = ([f"event: {event}"] if event else []) + [f"data: {data if isinstance(data, str) else json.dumps(data)}"]
    return (newline.join(lines) + newline * 2).encode()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_logprob(token: str) -> dict:
    """A stable, plausible log-probability for a token: small and negative, derived from the token."""
    return {"token": token, "logprob": -round(int(hashlib.sha256(token.encode()).hexdigest()[:6], 16) / 0xFFFFFF * 0.5, 6)}


def claude_version(model: str) -> tuple[int, int]:
    """claude-sonnet-4-5(-20250929) is (4, 5), claude-opus-5 is (5, 0); an id of another shape is (0, 0)."""
    match = CLAUDE_VERSION.search(model)
    return (int(match[1]), int(match[2] or 0)) if match else (0, 0)


def blocks_of(content: Any) -> list:
    """A message's content as Anthropic blocks: a string is one text block."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


# --- the three APIs ---------------------------------------------------------


class _API(ABC):
    """One provider's routes and formats; the shared state lives on the MockProvider."""

    status_kinds: dict[int, str] = {}
    default_kind = ""

    def __init__(self, mock: "MockProvider"):
        self.mock = mock

    @abstractmethod
    def handle(self, call: Call) -> Reply | Stream:
        """Answer one request in this provider's format."""

    @abstractmethod
    def error_body(self, status: int, message: str, code: str | None) -> dict:
        """An error in this provider's own shape."""

    def error_reply(self, error: ProviderError) -> Reply:
        message = error.message or HTTPStatus(error.status).phrase
        headers = dict(error.headers)
        if error.status == HTTPStatus.TOO_MANY_REQUESTS:
            headers.setdefault("Retry-After", RETRY_AFTER_SECONDS)
        return Reply(error.status, self.error_body(error.status, message, error.code), headers)

    def kind(self, status: int) -> str:
        return self.status_kinds.get(status, self.default_kind)


class _OpenAI(_API):
    status_kinds = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        403: "invalid_request_error",
        404: "invalid_request_error",
        429: "requests",
    }
    default_kind = "server_error"

    def handle(self, call: Call) -> Reply | Stream:
        key = self._authenticate(call)
        match call.method, call.path:
            case "POST", "/v1/chat/completions":
                return self._chat(call, key)
            case "POST", "/v1/embeddings":
                return self._embeddings(call)
            case "GET", "/v1/models":
                return Reply(200, {"object": "list", "data": [self._model(name) for name in OPENAI_MODELS]})
        raise ProviderError(404, f"Invalid URL ({call.method} {call.path})")

    def error_body(self, status: int, message: str, code: str | None) -> dict:
        return {"error": {"message": message, "type": self.kind(status), "param": None, "code": code}}

    @staticmethod
    def _authenticate(call: Call) -> str:
        scheme, _, key = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise ProviderError(401, "You didn't provide an API key. You need to provide your API key in an Authorization header.")
        if key == "invalid" or key.startswith("bad"):
            # The real API echoes a masked key; the mock echoes none so leak tests stay meaningful.
            raise ProviderError(401, "Incorrect API key provided.", code="invalid_api_key")
        return key

    @staticmethod
    def _model(name: str) -> dict:
        return {"id": name, "object": "model", "created": 1715367049, "owned_by": "system"}

    def _chat(self, call: Call, key: str) -> Reply | Stream:
        body = call.json if isinstance(call.json, dict) else {}
        messages, model = body.get("messages"), body.get("model")
        if not isinstance(messages, list) or not messages:
            raise ProviderError(400, "'messages' is a required property", code="invalid_value")
        if not isinstance(model, str) or not model:
            raise ProviderError(400, "you must provide a model parameter", code="missing_required_parameter")
        if body.get("stream_options") is not None and not body.get("stream"):
            raise ProviderError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        self._check_tool_calls(messages)
        user_text = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        self.mock.check_markers(user_text)

        tools = body.get("tools") or []
        tool_name = tools[0].get("function", {}).get("name") if tools else None
        max_tokens = _int(body.get("max_completion_tokens")) or _int(body.get("max_tokens"))
        answer = make_answer(user_text, len(messages), tool_name, max_tokens)
        choices = max(1, _int(body.get("n")) or 1)
        prompt = json.dumps(messages)
        prompt_tokens = estimate_tokens(prompt)
        cached = self.mock.prefix_cache_hit(("openai", key, model), prompt, prompt_tokens, step=OPENAI_CACHE_STEP)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": answer.tokens * choices,
            "total_tokens": prompt_tokens + answer.tokens * choices,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        call_ids = [f"call_{self.mock.next_call_number()}" for _ in range(choices)] if answer.tool_name else []
        envelope = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": model, "system_fingerprint": "fp_mock"}
        logprobs = body.get("logprobs") is True
        top = _int(body.get("top_logprobs")) or 0
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._chunks(envelope, answer, choices, call_ids, usage if include_usage else None, logprobs, top)
            return Stream(events, headers={"x-request-id": new_id("req_")})
        result = {
            **envelope,
            "object": "chat.completion",
            "choices": [self._choice(index, answer, call_ids, logprobs, top) for index in range(choices)],
            "usage": usage,
            "service_tier": "default",
        }
        return Reply(200, result, {"x-request-id": new_id("req_")})

    @staticmethod
    def _check_tool_calls(messages: list) -> None:
        called: set = set()
        for number, message in enumerate(messages):
            for position, tool_call in enumerate(message.get("tool_calls") or []):
                call_id = str(tool_call.get("id") or "")
                if len(call_id) > OPENAI_MAX_TOOL_CALL_ID:
                    raise ProviderError(
                        400,
                        f"Invalid 'messages[{number}].tool_calls[{position}].id': string too long. Expected a string with maximum "
                        f"length {OPENAI_MAX_TOOL_CALL_ID}, but got a string with length {len(call_id)} instead.",
                        code="string_above_max_length",
                    )
                called.add(call_id)
            if message.get("role") == "tool" and message.get("tool_call_id") not in called:
                raise ProviderError(
                    400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
                )

    @staticmethod
    def _finish_reason(answer: Answer) -> str:
        return "tool_calls" if answer.tool_name else "length" if answer.truncated else "stop"

    @staticmethod
    def _logprobs(pieces: Iterable[str], top: int) -> dict:
        def entry(token: str) -> dict:
            return {**token_logprob(token), "bytes": list(token.encode())}

        content = [{**entry(piece), "top_logprobs": [entry(piece)][:top]} for piece in pieces]
        return {"content": content, "refusal": None}

    def _choice(self, index: int, answer: Answer, call_ids: list[str], logprobs: bool, top: int) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text or None, "refusal": None, "annotations": []}
        if answer.tool_name:
            message["content"] = None
            function = {"name": answer.tool_name, "arguments": answer.arguments}
            message["tool_calls"] = [{"id": call_ids[index], "type": "function", "function": function}]
        return {
            "index": index,
            "message": message,
            "logprobs": self._logprobs(answer.pieces, top) if logprobs else None,
            "finish_reason": self._finish_reason(answer),
        }

    def _chunks(
        self,
        envelope: dict,
        answer: Answer,
        choices: int,
        call_ids: list[str],
        usage: dict | None,
        logprobs: bool,
        top: int,
    ) -> Iterator[bytes]:
        # With include_usage, every chunk carries "usage": null until the last, as OpenAI sends it.
        extra = {"usage": None} if usage else {}

        def chunk(index: int, delta: dict, finish_reason: str | None = None, piece: str | None = None) -> bytes:
            choice = {
                "index": index,
                "delta": delta,
                "logprobs": self._logprobs([piece], top) if logprobs and piece is not None else None,
                "finish_reason": finish_reason,
            }
            return sse({**envelope, "object": "chat.completion.chunk", "choices": [choice], **extra})

        # Choices are interleaved step by step, as they are when n > 1.
        for index in range(choices):
            if answer.tool_name:
                tool_call = {
                    "index": 0,
                    "id": call_ids[index],
                    "type": "function",
                    "function": {"name": answer.tool_name, "arguments": ""},
                }
                yield chunk(index, {"role": "assistant", "content": None, "tool_calls": [tool_call], "refusal": None})
            else:
                yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
        fragments = split_json(answer.arguments) if answer.tool_name else list(answer.pieces)
        for fragment in fragments:
            for index in range(choices):
                if answer.tool_name:
                    yield chunk(index, {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
                else:
                    yield chunk(index, {"content": fragment}, piece=fragment)
        for index in range(choices):
            yield chunk(index, {}, self._finish_reason(answer))
        if usage:
            yield sse({**envelope, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        yield sse("[DONE]")

    def _embeddings(self, call: Call) -> Reply:
        body = call.json if isinstance(call.json, dict) else {}
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and all(isinstance(i, int) for i in inputs)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise ProviderError(400, "'input' is a required property", code="invalid_value")
        self.mock.check_markers(" ".join(item for item in inputs if isinstance(item, str)))
        dimensions = _int(body.get("dimensions")) or EMBEDDING_DIMENSIONS
        if not 1 <= dimensions <= 3072:  # text-embedding-3-large's most, as OpenAI answers beyond a model's
            raise ProviderError(400, "This model does not support specifying dimensions outside 1 to 3072.", code="invalid_value")
        data = []
        for index, item in enumerate(inputs):
            vector: Any = embedding(item, dimensions)
            if body.get("encoding_format") == "base64":
                # The openai SDK asks for base64 by default and decodes little-endian float32 itself.
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(item) if isinstance(item, list) else estimate_tokens(str(item)) for item in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Reply(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})


class _Anthropic(_API):
    status_kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }
    default_kind = "api_error"

    def handle(self, call: Call) -> Reply | Stream:
        key = call.headers.get("x-api-key", "")
        if not key:
            raise ProviderError(401, "x-api-key header is required")
        if key == "invalid" or key.startswith("bad"):
            raise ProviderError(401, "invalid x-api-key")
        if not call.headers.get("anthropic-version"):
            raise ProviderError(400, "anthropic-version: header is required")
        if (call.method, call.path) != ("POST", "/v1/messages"):
            raise ProviderError(404, "Not Found")
        return self._messages(call, key)

    def error_body(self, status: int, message: str, code: str | None) -> dict:
        return {"type": "error", "error": {"type": code or self.kind(status), "message": message}, "request_id": new_id("req_")}

    def _messages(self, call: Call, key: str) -> Reply | Stream:
        body = call.json if isinstance(call.json, dict) else {}
        messages, model, max_tokens = body.get("messages"), body.get("model"), _int(body.get("max_tokens"))
        if not isinstance(model, str) or not model:
            raise ProviderError(400, "model: Field required")
        if not isinstance(messages, list) or not messages:
            raise ProviderError(400, "messages: Field required")
        if max_tokens is None:
            raise ProviderError(400, "max_tokens: Field required")
        if body.get("temperature") is not None and body.get("top_p") is not None:
            raise ProviderError(400, "`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
        for number, message in enumerate(messages):
            if not message.get("content") and not (number == len(messages) - 1 and message.get("role") == "assistant"):
                raise ProviderError(
                    400, f"messages.{number}: all messages must have non-empty content except for the optional final assistant message"
                )
        self._check_text_blocks(body)
        thinks = self._check_thinking(body, model, max_tokens)
        user_text = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        self.mock.check_markers(user_text)
        if CONTEXT_MARKER in user_text:
            raise ProviderError(400, "prompt is too long: 200001 tokens > 200000 maximum")

        tools = body.get("tools") or []
        answer = make_answer(user_text, len(messages), tools[0].get("name") if tools else None, max_tokens)
        input_tokens, created, read = self.mock.anthropic_cache(key, model, self._prompt_blocks(body))
        content = [self._block(answer)]
        if thinks:
            content.insert(0, self._thinking_block(len(messages), redacted=REDACTED_MARKER in user_text))
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            # Thinking is billed as output: its tokens are in output_tokens, not counted apart.
            "output_tokens": answer.tokens + (estimate_tokens(json.dumps(content[0])) if thinks else 0),
        }
        stop_reason = forced_finish(user_text) or ("tool_use" if answer.tool_name else "max_tokens" if answer.truncated else "end_turn")
        message = {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }
        headers = {"request-id": new_id("req_")}
        if body.get("stream"):
            return Stream(self._events(message, answer), headers=headers)
        return Reply(200, message, headers)

    @staticmethod
    def _check_text_blocks(body: dict) -> None:
        def has_empty_text(blocks: list) -> bool:
            return any(isinstance(block, dict) and block.get("type") == "text" and not block.get("text") for block in blocks)

        if isinstance(body.get("system"), list) and has_empty_text(body["system"]):
            raise ProviderError(400, "system: text content blocks must be non-empty")
        if any(isinstance(m.get("content"), list) and has_empty_text(m["content"]) for m in body.get("messages") or []):
            raise ProviderError(400, "messages: text content blocks must be non-empty")

    @staticmethod
    def _check_thinking(body: dict, model: str, max_tokens: int) -> bool:
        """Whether the answer thinks; refuses what Anthropic refuses beside thinking."""
        thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
        kind, version = thinking.get("type"), claude_version(model)
        if kind in (None, "disabled"):
            return False
        if kind == "enabled":
            budget = _int(thinking.get("budget_tokens"))
            if version >= (4, 7):
                raise ProviderError(400, '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" instead.')
            if budget is None or budget < MIN_THINKING_BUDGET:
                raise ProviderError(400, f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}")
            if budget >= max_tokens:
                raise ProviderError(400, "`max_tokens` must be greater than `thinking.budget_tokens`.")
        elif kind == "adaptive":
            if version < (4, 6):
                raise ProviderError(400, "adaptive thinking is not supported on this model.")
            if (body.get("output_config") or {}).get("effort", "high") not in ANTHROPIC_EFFORTS:
                raise ProviderError(400, f"output_config.effort: Input should be {', '.join(ANTHROPIC_EFFORTS)}")
        else:
            raise ProviderError(400, f"thinking.type: Input tag '{kind}' does not match any of the expected tags")
        if body.get("temperature") not in (None, 1):
            raise ProviderError(400, "`temperature` may only be set to 1 when thinking is enabled.")
        if body.get("top_k") is not None:
            raise ProviderError(400, "`top_k` is not compatible with thinking.")
        if not 0.95 <= body.get("top_p", 1) <= 1:
            raise ProviderError(400, "`top_p` must be between 0.95 and 1 when thinking is enabled.")
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            raise ProviderError(400, "Thinking may not be enabled when tool_choice forces tool use.")
        messages = body["messages"]
        if len(messages) > 1 and any(b.get("type") == "tool_result" for b in blocks_of(messages[-1].get("content")) if isinstance(b, dict)):
            first = blocks_of(messages[-2].get("content"))[0]
            if first.get("type") not in ("thinking", "redacted_thinking"):
                raise ProviderError(
                    400,
                    f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"`{first.get('type')}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block.",
                )
        return True

    @staticmethod
    def _thinking_block(message_count: int, *, redacted: bool) -> dict:
        if redacted:
            return {"type": "redacted_thinking", "data": base64.b64encode(f"redacted {message_count}".encode()).decode()}
        thought = f"Mock thinking about {message_count} messages."
        return {"type": "thinking", "thinking": thought, "signature": base64.b64encode(hashlib.sha256(thought.encode()).digest()).decode()}

    @staticmethod
    def _prompt_blocks(body: dict) -> list[dict]:
        """The prompt in Anthropic's cache order (tools, then system, then messages), block by block."""
        system = body.get("system")
        blocks = list(body.get("tools") or [])
        blocks += [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
        for message in body.get("messages") or []:
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
            blocks += [{**part, "role": message.get("role")} for part in parts if isinstance(part, dict)]
        return blocks

    def _block(self, answer: Answer) -> dict:
        if answer.tool_name:
            return {"type": "tool_use", "id": new_id("toolu_"), "name": answer.tool_name, "input": answer.input}
        return {"type": "text", "text": answer.text}

    @staticmethod
    def _events(message: dict, answer: Answer) -> Iterator[bytes]:
        def event(name: str, **data: Any) -> bytes:
            return sse({"type": name, **data}, event=name)

        # message_start carries the input side of usage and a placeholder output count.
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = {**message["usage"], "output_tokens": 1}
        yield event("message_start", message=start)
        *thinking, block = message["content"]
        for thought in thinking:
            if thought["type"] == "redacted_thinking":  # sent whole, with no deltas
                yield event("content_block_start", index=0, content_block=thought)
            else:
                yield event("content_block_start", index=0, content_block={"type": "thinking", "thinking": "", "signature": ""})
                for piece in split_words(thought["thinking"]):
                    yield event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": piece})
                yield event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": thought["signature"]})
            yield event("content_block_stop", index=0)
        index = len(thinking)
        if answer.tool_name:
            yield event("content_block_start", index=index, content_block={**block, "input": {}})
            yield event("ping")
            # A call without arguments streams only the opening empty fragment, as Anthropic's does.
            fragments = split_json(answer.arguments) if answer.input else []
            deltas = [{"type": "input_json_delta", "partial_json": part} for part in ["", *fragments]]
        else:
            yield event("content_block_start", index=index, content_block={"type": "text", "text": ""})
            yield event("ping")
            deltas = [{"type": "text_delta", "text": piece} for piece in answer.pieces]
        for delta in deltas:
            yield event("content_block_delta", index=index, delta=delta)
        yield event("content_block_stop", index=index)
        stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        yield event("message_delta", delta=stop, usage={"output_tokens": message["usage"]["output_tokens"]})
        yield event("message_stop")


class _Gemini(_API):
    status_kinds = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
    default_kind = "UNKNOWN"

    def handle(self, call: Call) -> Reply | Stream:
        if "key" in call.query:
            # Real Gemini accepts ?key=; the mock refuses it so tests prove keys never go into URLs.
            raise ProviderError(400, "API keys in the URL are refused by this mock: send the x-goog-api-key header.")
        key = call.headers.get("x-goog-api-key", "")
        if not key:
            raise ProviderError(
                403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key."
            )
        if key == "invalid" or key.startswith("bad"):
            raise ProviderError(400, "API key not valid. Please pass a valid API key.", code="API_KEY_INVALID")
        if call.method == "GET" and call.path == "/v1beta/models":
            return Reply(200, {"models": [self._model(name, methods) for name, methods in GEMINI_MODELS]})
        model, _, method = call.path.removeprefix("/v1beta/models/").partition(":")
        if call.method != "POST" or not call.path.startswith("/v1beta/models/") or not model:
            raise ProviderError(404, f"Method not found: {call.method} {call.path}")
        match method:
            case "generateContent":
                return self._generate(call, key, model, stream=False)
            case "streamGenerateContent":
                return self._generate(call, key, model, stream=True)
            case "embedContent":
                return self._embed(call, batch=False)
            case "batchEmbedContents":
                return self._embed(call, batch=True)
        raise ProviderError(404, f"Method not found: {method}")

    def error_body(self, status: int, message: str, code: str | None) -> dict:
        error: dict[str, Any] = {"code": status, "message": message, "status": self.kind(status)}
        if code:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code, "domain": "googleapis.com"}]
        return {"error": error}

    def error_reply(self, error: ProviderError) -> Reply:
        if error.status != HTTPStatus.TOO_MANY_REQUESTS:
            return super().error_reply(error)
        # Gemini says when to retry in the body (google.rpc.RetryInfo), with no Retry-After header.
        message = error.message or "You exceeded your current quota, please check your plan and billing details."
        body = self.error_body(error.status, message, error.code)
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER_SECONDS}s"}
        body["error"]["details"] = [*body["error"].get("details", []), retry]
        return Reply(error.status, body, dict(error.headers))

    @staticmethod
    def _model(name: str, methods: tuple[str, ...]) -> dict:
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": name.replace("-", " ").title(),
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 8192,
            "supportedGenerationMethods": list(methods),
        }

    @staticmethod
    def _first_function(tools: list) -> str | None:
        for tool in tools:
            declarations = tool.get("functionDeclarations") or tool.get("function_declarations") or []
            if declarations:
                return declarations[0].get("name")
        return None

    @staticmethod
    def _signs_calls(model: str) -> bool:
        match = re.search(r"gemini-(\d+)", model)
        return match is not None and int(match[1]) >= 3

    @staticmethod
    def _signature(model: str, function_call: dict) -> str:
        """The mock's thought signature for a call: base64 that uses "+", "/" and "=", as real ones do."""
        digest = hashlib.sha256(json.dumps([model, function_call], sort_keys=True).encode()).digest()
        return base64.b64encode(b"\xfb\xef\xff" + digest).decode()

    def _check_contents(self, contents: list, model: str) -> None:
        """Refuse what Gemini refuses: an empty turn, and (Gemini 3+) a replayed call without its signature."""
        for number, content in enumerate(contents):
            parts = content.get("parts") if isinstance(content, dict) else None
            if not parts:
                raise ProviderError(400, f"* GenerateContentRequest.contents[{number}].parts: contents.parts must not be empty.")
            calls = [part for part in parts if isinstance(part, dict) and "functionCall" in part]
            if not self._signs_calls(model) or not calls:
                continue
            if "thoughtSignature" not in calls[0]:
                raise ProviderError(
                    400,
                    f"Function call is missing a thought_signature in functionCall parts, position {number}. "
                    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                )
            for part in calls:
                if part.get("thoughtSignature") not in (None, UNSIGNED, self._signature(model, part["functionCall"])):
                    raise ProviderError(400, f"Corrupted thought signature in contents[{number}].")

    def _check_config(self, config: dict, model: str) -> None:
        thinking = config.get("thinkingConfig") or {}
        level, budget = thinking.get("thinkingLevel"), thinking.get("thinkingBudget")
        if level is not None and budget is not None:
            raise ProviderError(400, "You can only set one of thinking_level and thinking_budget.")
        if level is not None and (not self._signs_calls(model) or str(level).lower() not in GEMINI_THINKING_LEVELS):
            raise ProviderError(400, f"Thinking level {level} is not supported for this model.")
        if budget is not None and budget not in (-1, 0) and not self._signs_calls(model):
            low, high = next((r for name, r in GEMINI_THINKING_BUDGETS.items() if f"-{name}" in model), (1, 24576))
            if not low <= budget <= high:
                raise ProviderError(400, f"The thinking budget {budget} is invalid. Please choose a value between {low} and {high}.")
        if budget == 0 and "-pro" in model:
            raise ProviderError(400, "Budget 0 is invalid. This model only works in thinking mode.")
        logprobs = config.get("logprobs")
        if logprobs is not None and not config.get("responseLogprobs"):
            raise ProviderError(400, "logprobs is only valid if response_logprobs is true.")
        if logprobs is not None and not 0 <= logprobs <= GEMINI_MAX_LOGPROBS:
            raise ProviderError(400, f"logprobs must be in the range of [0, {GEMINI_MAX_LOGPROBS}].")

    @staticmethod
    def _logprobs_result(pieces: Iterable[str], top: int) -> dict:
        def candidate(token: str) -> dict:
            entry = token_logprob(token)
            return {"token": token, "tokenId": int(hashlib.sha256(token.encode()).hexdigest()[:4], 16), "logProbability": entry["logprob"]}

        chosen = [candidate(piece) for piece in pieces]
        result: dict[str, Any] = {"chosenCandidates": chosen, "logProbabilitySum": sum(c["logProbability"] for c in chosen)}
        if top:
            result["topCandidates"] = [{"candidates": [c][:top]} for c in chosen]
        return result

    def _generate(self, call: Call, key: str, model: str, *, stream: bool) -> Reply | Stream:
        body = call.json if isinstance(call.json, dict) else {}
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise ProviderError(400, "* GenerateContentRequest.contents: contents is not specified")
        self._check_contents(contents, model)
        self._check_config(body.get("generationConfig") or {}, model)
        user_text = next((text_of(c.get("parts")) for c in reversed(contents) if c.get("role", "user") == "user"), "")
        self.mock.check_markers(user_text)
        if CONTEXT_MARKER in user_text:
            raise ProviderError(
                400,
                f"The input token count ({GEMINI_CONTEXT_WINDOW + 1}) exceeds the maximum number of tokens allowed "
                f"({GEMINI_CONTEXT_WINDOW}).",
            )

        config = body.get("generationConfig") or {}
        tool_name = self._first_function(body.get("tools") or [])
        answer = make_answer(user_text, len(contents), tool_name, _int(config.get("maxOutputTokens")))
        candidates = max(1, _int(config.get("candidateCount")) or 1)
        prompt = json.dumps({k: body[k] for k in ("systemInstruction", "tools", "contents") if k in body})
        prompt_tokens = estimate_tokens(prompt)
        cached = self.mock.prefix_cache_hit(("gemini", key, model), prompt, prompt_tokens)
        envelope = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
        if BLOCK_MARKER in user_text:
            # A blocked prompt: no candidates at all, and promptFeedback says why.
            usage = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
            blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": usage, **envelope}
            return self._stream(call, [blocked]) if stream else Reply(200, blocked)
        finish = forced_finish(user_text) or ("MAX_TOKENS" if answer.truncated else "STOP")

        def response(parts: list[dict], output_tokens: int, finished: bool) -> dict:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if finished:
                candidate["finishReason"] = finish
            return {
                "candidates": [{**candidate, "index": index} for index in range(candidates)],
                "usageMetadata": self._usage(prompt_tokens, output_tokens * candidates, cached),
                **envelope,
            }

        if answer.tool_name:
            function_call = {"name": answer.tool_name, "args": answer.input}
            parts = [{"functionCall": function_call}]
            if self._signs_calls(model):
                parts[0]["thoughtSignature"] = self._signature(model, function_call)
            steps = [(parts, answer.tokens)]
        else:
            # Each streamed response carries cumulative usage, so the last one holds the totals.
            steps = [([{"text": piece}], count) for count, piece in enumerate(answer.pieces, 1)] or [([{"text": ""}], 0)]
        if not stream:
            parts = steps[0][0] if answer.tool_name else [{"text": answer.text}]
            reply = response(parts, answer.tokens, True)
            if config.get("responseLogprobs"):
                result = self._logprobs_result(answer.pieces, _int(config.get("logprobs")) or 0)
                reply["candidates"] = [{**candidate, "logprobsResult": result} for candidate in reply["candidates"]]
            return Reply(200, reply)
        return self._stream(call, [response(parts, tokens, number == len(steps)) for number, (parts, tokens) in enumerate(steps, 1)])

    def _stream(self, call: Call, chunks: list[dict]) -> Stream:
        if call.query.get("alt") == "sse":
            # Gemini frames its SSE with CRLF line endings.
            return Stream(sse(chunk, newline="\r\n") for chunk in chunks)
        return Stream(self._json_array(chunks), content_type="application/json; charset=UTF-8")

    @staticmethod
    def _json_array(chunks: list[dict]) -> Iterator[bytes]:
        # Without alt=sse, Gemini streams one JSON array, element by element.
        for number, chunk in enumerate(chunks):
            yield (("[" if number == 0 else ",\r\n") + json.dumps(chunk)).encode()
        yield b"]"

    @staticmethod
    def _usage(prompt_tokens: int, output_tokens: int, cached: int) -> dict:
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        }
        if cached:
            # Google's JSON leaves out zero counts, so cachedContentTokenCount appears only on a hit.
            usage["cachedContentTokenCount"] = cached
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
        return usage

    @staticmethod
    def _embedding(text: str, dimensions: int | None) -> list[float]:
        """A shortened embedding is the full one cut (Matryoshka), so it is no longer a unit vector."""
        if dimensions and dimensions < GEMINI_EMBEDDING_SIZE:
            return embedding(text, GEMINI_EMBEDDING_SIZE)[:dimensions]
        return embedding(text, dimensions or EMBEDDING_DIMENSIONS)

    def _embed(self, call: Call, *, batch: bool) -> Reply:
        body = call.json if isinstance(call.json, dict) else {}
        requests = body.get("requests") if batch else [body]
        if not isinstance(requests, list) or not requests or not all(isinstance(r, dict) and r.get("content") for r in requests):
            raise ProviderError(400, "* EmbedContentRequest.content: content is not specified")
        texts = [text_of((request.get("content") or {}).get("parts")) for request in requests]
        self.mock.check_markers(" ".join(texts))
        embeddings = [
            {"values": self._embedding(text, _int(request.get("outputDimensionality")))}
            for text, request in zip(texts, requests, strict=True)
        ]
        return Reply(200, {"embeddings": embeddings} if batch else {"embedding": embeddings[0]})


# --- the server -------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """Keeps its open connections so stop() can cut keep-alive clients off too."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], mock: "MockProvider"):
        self.mock = mock
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address):
        """Silent: the default prints a traceback, and the mock logs nothing per request."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; bodies carry Content-Length, streams are chunked
    server_version = "MockProvider/1.0"
    timeout = IDLE_CONNECTION_SECONDS
    server: _Server

    def version_string(self) -> str:
        return self.server_version  # without the Python version the default appends

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default access log is noise, and errors could carry request text."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        raw = self._read_body()
        url = urlsplit(self.path)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        call = Call(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            json=parsed,
        )
        mock = self.server.mock
        mock.record(call)
        mock.pause(mock.latency_ms / 1000)
        answer = mock.respond(call, malformed=bool(raw) and parsed is None)
        try:
            if isinstance(answer, Stream):
                self._send_stream(answer)
            else:
                self._send_reply(answer)
        except OSError:
            self.close_connection = True  # the client went away (or stop() cut it off) mid-answer

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_reply(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_stream(self, stream: Stream) -> None:
        # Chunked transfer keeps the connection reusable and lets every event go out on its own.
        self.send_response(200)
        self.send_header("Content-Type", stream.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in stream.headers.items():
            self.send_header(name, value)
        self.end_headers()
        mock = self.server.mock
        for number, event in enumerate(stream.events):
            if number:
                mock.pause(mock.chunk_delay_ms / 1000)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class MockProvider:
    """An HTTP server imitating OpenAI, Anthropic and Gemini; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        chunk_delay_ms: int = 0,
        fail_rate: float = 0.0,
        seed: int = 0,
    ):
        self.host, self.port = host, port
        self.latency_ms, self.chunk_delay_ms, self.fail_rate = latency_ms, chunk_delay_ms, fail_rate
        self.requests: list[dict] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._failures: deque[tuple[int, dict | None, dict | None]] = deque()
        self._prefixes: dict[tuple, deque[str]] = {}
        self._anthropic_prefixes: set[tuple] = set()
        self._calls = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._apis = {"openai": _OpenAI(self), "anthropic": _Anthropic(self), "gemini": _Gemini(self)}

    # lifecycle

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("MockProvider is not started")
        return f"http://{self.host}:{self.port}"

    def bind(self) -> "MockProvider":
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
        return self

    def start(self) -> "MockProvider":
        """Serve in a daemon thread; returns self so ``mock = MockProvider().start()`` reads well."""
        self.bind()
        # A short poll interval keeps stop() quick, which matters for a fixture started per test.
        serve = functools.partial(self._server.serve_forever, poll_interval=STOP_POLL_SECONDS)
        self._thread = threading.Thread(target=serve, name=f"mock-provider-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self.bind()
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stopping.set()  # wakes any simulated latency or FAIL_TIMEOUT sleep
        server, self._server = self._server, None
        if server is None:
            return
        if self._thread is not None:
            server.shutdown()
            self._thread.join()
            self._thread = None
        server.server_close()
        server.close_connections()

    def __enter__(self) -> "MockProvider":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # test controls

    def fail_next(self, status: int, body: dict | None = None, headers: dict | None = None, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``status`` (body in the provider's error shape unless given)."""
        with self._lock:
            self._failures.extend([(status, body, headers)] * count)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self._prefixes.clear()
            self._anthropic_prefixes.clear()

    # used by the handler and the APIs

    def record(self, call: Call) -> None:
        with self._lock:
            self.requests.append(
                {"path": call.path, "query": call.query, "method": call.method, "headers": call.headers, "json": call.json}
            )

    def pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def respond(self, call: Call, *, malformed: bool = False) -> Reply | Stream:
        api = self._api_for(call.path)
        try:
            queued = self._take_failure()
            if queued is not None:
                status, body, headers = queued
                reply = api.error_reply(ProviderError(status, headers=headers))
                if body is not None:
                    reply.body = body
                return reply
            if self.fail_rate and self._chance() < self.fail_rate:
                raise ProviderError(500)
            if malformed:
                raise ProviderError(400, "The request body is not valid JSON.")
            return api.handle(call)
        except ProviderError as error:
            return api.error_reply(error)
        except Exception as error:  # a bug in the mock still answers in the provider's shape
            return api.error_reply(ProviderError(500, f"mock provider error: {type(error).__name__}"))

    def check_markers(self, text: str) -> None:
        """Act on the FAIL_* markers a test put into the last user message."""
        if "FAIL_ECHO" in text:
            raise ProviderError(400, f'Invalid prompt: the following input was rejected: "{text}"')
        if "FAIL_500" in text:
            raise ProviderError(500, "The server had an error while processing your request.")
        if "FAIL_429" in text:
            raise ProviderError(429, "Rate limit reached. Please try again in 1s.")
        if "FAIL_TIMEOUT" in text:
            self.pause(FAIL_TIMEOUT_SECONDS)

    def next_call_number(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def prefix_cache_hit(self, scope: tuple, prompt: str, prompt_tokens: int, *, step: int = 1) -> int:
        """Automatic prefix caching (OpenAI, Gemini): tokens of the longest prefix shared with an earlier prompt."""
        with self._lock:
            seen = self._prefixes.setdefault(scope, deque(maxlen=PREFIX_CACHE_HISTORY))
            shared = max((len(os.path.commonprefix([prompt, earlier])) for earlier in seen), default=0)
            seen.append(prompt)
        if prompt_tokens < PREFIX_CACHE_MIN_TOKENS:
            return 0
        cached = shared // 4 // step * step
        return cached if cached >= PREFIX_CACHE_MIN_TOKENS else 0

    def anthropic_cache(self, key: str, model: str, blocks: list[dict]) -> tuple[int, int, int]:
        """Explicit prompt caching: (uncached input, cache-write, cache-read) token counts.

        Each block with ``cache_control`` is a breakpoint; the prefix through it is
        written on first sight and read when an identical prefix comes again.
        """
        # cache_control marks a breakpoint without being part of the cached text.
        serialized = [json.dumps({k: v for k, v in block.items() if k != "cache_control"}) for block in blocks]
        ends = [sum(map(len, serialized[: index + 1])) for index in range(len(serialized))]
        total = estimate_tokens("".join(serialized))
        breakpoints = [i for i, block in enumerate(blocks) if (block.get("cache_control") or {}).get("type") == "ephemeral"]
        if not breakpoints:
            return total, 0, 0
        digests = {i: hashlib.sha256("".join(serialized[: i + 1]).encode()).hexdigest() for i in breakpoints}
        with self._lock:
            hits = [i for i in breakpoints if (key, model, digests[i]) in self._anthropic_prefixes]
            self._anthropic_prefixes.update((key, model, digest) for digest in digests.values())
        read = ends[hits[-1]] // 4 if hits else 0
        written = ends[breakpoints[-1]] // 4 - read
        return total - read - written, written, read

    def _take_failure(self) -> tuple[int, dict | None, dict | None] | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _chance(self) -> float:
        with self._lock:
            return self._random.random()

    def _api_for(self, path: str) -> _API:
        if path.startswith("/v1beta/"):
            return self._apis["gemini"]
        if path == "/v1/messages" or path.startswith("/v1/messages/"):
            return self._apis["anthropic"]
        return self._apis["openai"]


# --- command line -----------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--latency-ms", type=int, default=0, help="delay before the first byte of every answer")
    parser.add_argument("--chunk-delay-ms", type=int, default=0, help="delay between streamed events")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="probability that a request fails with 500")
    parser.add_argument("--seed", type=int, default=0, help="seed for --fail-rate")


def serve(options: dict, out) -> None:
    """Run a MockProvider in the foreground until interrupted."""
    mock = MockProvider(
        host=options["host"],
        port=options["port"],
        latency_ms=options["latency_ms"],
        chunk_delay_ms=options["chunk_delay_ms"],
        fail_rate=options["fail_rate"],
        seed=options.get("seed") or 0,
    ).bind()
    out.write(f"mock provider (OpenAI, Anthropic, Gemini) listening on {mock.url}\n")
    out.flush()
    try:
        mock.serve_forever()
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mock_provider", description="Imitate the OpenAI, Anthropic and Gemini APIs.")
    add_arguments(parser)
    serve(vars(parser.parse_args(argv)), sys.stdout)


if __name__ == "__main__":
    main()
