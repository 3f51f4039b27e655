"""What every provider adapter shares: the call it is given and the usage it reports."""

import json
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import catalog

# OpenAI's reasoning_effort values, least to most.
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass
class Usage:
    """Token counts in OpenAI's terms: ``prompt_tokens`` includes cached reads and cache writes."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    reported: bool = False  # the provider said so (rather than AURA counting)

    def as_openai(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass
class Call:
    """One upstream call: where, with which secret, and the client's OpenAI-format body."""

    base_url: str
    secret: str = field(repr=False)
    upstream_model: str
    body: dict
    stream: bool = False
    include_usage: bool = False  # the client asked for the usage chunk
    max_output_tokens: int | None = None
    steer_cache: bool = False  # place provider cache breakpoints where the client placed none
    prompt_cache_key: str | None = None  # OpenAI: route a conversation to the same cache
    steered: bool = False  # set by the adapter when it placed breakpoints


@dataclass
class Upstream:
    method: str
    url: str
    headers: dict = field(repr=False)
    json: dict | None = None


class ErrorInfo(NamedTuple):
    """What an adapter reads from a provider's error body: its kind and code, never its message,
    which may quote the prompt."""

    kind: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: int | None = None  # whole seconds, when the body (not a header) says when to retry


class AdapterError(ValueError):
    """The request cannot be expressed for this provider; the message is safe to show."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class UpstreamStreamError(Exception):
    """The provider reported an error in the middle of a stream; the argument is its error type."""


class StreamState:
    """What a stream has told us so far: usage, and the text sent, to count if usage never comes."""

    def __init__(self):
        self.usage = Usage()
        # The provider's count of the prompt when it gives it before the answer (Anthropic's
        # message_start, cache reads and writes included): a stream cut short is charged with it.
        self.input_usage: Usage | None = None
        self.sent_chars: list[str] = []
        self.finished = False

    def saw_text(self, text: str | None) -> None:
        if text:
            self.sent_chars.append(text)


def sse(data: dict | str | bytes) -> bytes:
    """One SSE event: a chunk (dict) serialised, or JSON text (str or bytes) as it is.

    Text that spans lines (an upstream event sent as several data fields) goes out the same way:
    a line break inside one data field would end the event early for the client.
    """
    if type(data) is not bytes:
        data = (data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)).encode()
    if b"\n" in data or b"\r" in data:
        return b"".join(b"data: " + line + b"\n" for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")) + b"\n"
    return b"data: " + data + b"\n\n"


def iter_sse_data(lines):
    """The data of each SSE event, as bytes: ``iter_sse`` for a relay that passes events on unchanged."""
    data = None
    for line in lines:
        if not line:
            if data is not None:
                yield data
                data = None
        elif line.startswith(b"data:"):
            value = line[5:].lstrip(b" ")
            data = value if data is None else data + b"\n" + value
    if data is not None:
        yield data


def iter_sse(lines):
    """Yield (event, data) pairs from an iterator of raw SSE lines (bytes, without newlines)."""
    event, data = None, []
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    if data:
        yield event, "\n".join(data)


def reasoning_effort(call: Call, provider: str) -> str | None:
    """The client's ``reasoning_effort``, refused as OpenAI refuses it: a value outside its set, or a model
    the catalog does not mark as reasoning (a model it does not list included)."""
    effort = call.body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in EFFORTS:
        supported = ", ".join(f"'{e}'" for e in EFFORTS)
        raise AdapterError(f"Invalid value for 'reasoning_effort': supported values are {supported}.", "reasoning_effort")
    models = catalog.load().models.values()
    if not any(m.provider == provider and m.upstream == call.upstream_model and m.supports("reasoning") for m in models):
        raise AdapterError("Unsupported parameter: 'reasoning_effort' is not supported with this model.", "reasoning_effort")
    return effort


def text_of(content) -> str:
    """The text of an OpenAI message content: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")


def finish_chunk_base(chunk_id: str, created: int, model: str) -> dict:
    return {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": []}
