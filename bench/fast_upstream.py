"""A fast stand-in for OpenAI's chat API, for benchmarks: standard library only, one asyncio process.

    python bench/fast_upstream.py [--host 127.0.0.1] [--port 0] [--chunks 10] [--chunk-delay-ms 0]

Answers on HTTP/1.1 with keep-alive, parsed by hand (no http.server, no framework):

- ``POST /v1/chat/completions``: a fixed, small ``chat.completion`` with ``usage``; when the JSON body
  has ``"stream": true``, an SSE stream (chunked transfer encoding) of ``--chunks`` content chunks
  ``--chunk-delay-ms`` apart, then a usage chunk and ``data: [DONE]``.
- ``GET /v1/models``: one model, ``gpt-4o-mini``.

Every answer is built once at start-up, so a call costs little more than parsing its headers.
It accepts any bearer key. The first line on stdout is ``listening on <host>:<port>``.
"""

import argparse
import asyncio
import json
import signal
import time

MODEL = "gpt-4o-mini"
CREATED = int(time.time())
CONTENT = "Hello! This is the benchmark upstream answering."
USAGE = {"prompt_tokens": 14, "completion_tokens": 10, "total_tokens": 24}
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


def _json_response(status: str, payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


COMPLETION = _json_response(
    "200 OK",
    {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    },
)
MODELS = _json_response("200 OK", {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}]})
NOT_FOUND = _json_response("404 Not Found", {"error": {"message": "Unknown URL.", "type": "invalid_request_error", "code": "unknown_url"}})
BAD_REQUEST = _json_response("400 Bad Request", {"error": {"message": "Bad request.", "type": "invalid_request_error", "code": None}})
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(payload: dict | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return _http_chunk(f"data: {text}\n\n".encode())


def stream_frames(chunks: int) -> tuple[list[bytes], bytes]:
    """The content chunks, each framed as one HTTP chunk, and the tail (usage chunk, [DONE], last chunk)."""
    base = {"id": "chatcmpl-bench0000000000000000000000", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL}
    words = CONTENT.split(" ")
    frames = []
    for index in range(chunks):
        delta = {"content": words[index % len(words)] + " "}
        if index == 0:
            delta["role"] = "assistant"
        finish = "stop" if index == chunks - 1 else None
        frames.append(_sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}))
    usage = {**base, "choices": [], "usage": {**USAGE, "completion_tokens": chunks, "total_tokens": USAGE["prompt_tokens"] + chunks}}
    return frames, _sse(usage) + _sse("[DONE]") + b"0\r\n\r\n"


class Upstream:
    def __init__(self, chunks: int, chunk_delay: float):
        self.frames, self.tail = stream_frames(chunks)
        self.chunk_delay = chunk_delay

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        else:
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                raise ValueError("body too large")
            body = await reader.readexactly(length) if length else b""
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        path = target.split("?", 1)[0]
        if method == "POST" and path == "/v1/chat/completions":
            try:
                stream = json.loads(body).get("stream") is True
            except (ValueError, AttributeError):
                writer.write(BAD_REQUEST)
                await writer.drain()
                return keep_alive
            if stream:
                await self._stream(writer)
            else:
                writer.write(COMPLETION)
        elif method == "GET" and path == "/v1/models":
            writer.write(MODELS)
        else:
            writer.write(NOT_FOUND)
        await writer.drain()
        return keep_alive

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts = []
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD)
        for index, frame in enumerate(self.frames):
            if index and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            writer.write(frame)
            await writer.drain()
        writer.write(self.tail)


async def serve(host: str, port: int, chunks: int, chunk_delay_ms: float) -> None:
    upstream = Upstream(chunks, chunk_delay_ms / 1000)
    server = await asyncio.start_server(upstream.handle, host, port, backlog=4096, limit=MAX_HEADER_BYTES)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the first line)")
    parser.add_argument("--chunks", type=int, default=10, help="content chunks per streamed answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause between streamed chunks")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, max(args.chunks, 1), max(args.chunk_delay_ms, 0.0)))


if __name__ == "__main__":
    main()
