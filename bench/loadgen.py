"""A light HTTP/1.1 load generator for bench/gateway.py: raw sockets, one process, loopback only.

    python bench/loadgen.py < spec.json     # prints one JSON object with the results

The spec (read from stdin, so keys never show in ``ps``) is::

    {"mode": "sequential" | "throughput" | "streams" | "calls",
     "host": "127.0.0.1", "port": 8000, "path": "/v1/chat/completions",
     "headers": {"Authorization": "Bearer ..."}, "body": {...},
     "identities": [{"Authorization": "Bearer ..."}, ...],   # optional: see below
     "count": 2000, "warmup": 200,          # sequential: calls on one keep-alive connection
     "connections": 50, "duration": 15,     # throughput: keep-alive connections for a fixed time
                                            # (with a streamed body: streams kept going, each connection
                                            # streaming again as soon as its stream ends)
     "streams": 1000,                        # streams: concurrent streamed calls, one connection each
     "calls": 10000,                         # calls: a fixed number of calls over `connections`
     "collect_header": "x-aura-overhead-ms", "timeout": 30}

A call succeeds when the status is 200 and the body is complete; a streamed call must also end
with ``data: [DONE]`` and carry no ``"error"`` event. Every loop is bounded in count and time,
and only loopback addresses are accepted.

``identities`` (extra headers, usually one key per tenant) spread the load over several callers:
sequential calls take them in turn, each stream takes the next, and keep-alive connection number
``c`` of ``n`` cycles through identities ``c``, ``c + n``, ``c + 2n``, … (only ``c`` when there are no
more identities than connections).
"""

import asyncio
import errno
import ipaddress
import json
import resource
import select
import socket
import statistics
import sys
import time
from collections import Counter

RECV = 65536


class ProtocolError(Exception):
    pass


class Response:
    __slots__ = ("status", "headers", "body", "close")

    def __init__(self, status: int, headers: dict, body: bytes, close: bool):
        self.status = status
        self.headers = headers
        self.body = body
        self.close = close


class ResponseParser:
    """Incremental HTTP/1.1 response parser (Content-Length, chunked, or until close); sans I/O."""

    def __init__(self):
        self.buffer = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.state = "head"
        self.remaining = 0
        self.close = False

    def feed(self, data: bytes) -> Response | None:
        """Take more bytes; return the response once it is complete. ``b""`` means the peer closed."""
        if not data:
            if self.state == "until_close":
                return self._done()
            raise ProtocolError("connection closed mid-response" if self.state != "head" or self.buffer else "connection closed")
        self.buffer += data
        while True:
            if self.state == "head":
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return None
                lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                del self.buffer[: end + 4]
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                    raise ProtocolError("bad status line")
                self.status = int(parts[1])
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    self.headers[name.strip().lower()] = value.strip()
                self.close = self.headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
                if "chunked" in self.headers.get("transfer-encoding", "").lower():
                    self.state = "chunk_size"
                elif "content-length" in self.headers:
                    self.remaining = int(self.headers["content-length"])
                    self.state = "length"
                else:
                    self.state = "until_close"
                    self.close = True
            elif self.state == "length":
                take = min(self.remaining, len(self.buffer))
                self.body += self.buffer[:take]
                del self.buffer[:take]
                self.remaining -= take
                if self.remaining:
                    return None
                return self._done()
            elif self.state == "chunk_size":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return None
                self.remaining = int(bytes(self.buffer[:end]).split(b";", 1)[0], 16)
                del self.buffer[: end + 2]
                self.state = "chunk_data" if self.remaining else "trailer"
            elif self.state == "chunk_data":
                if len(self.buffer) < self.remaining + 2:
                    return None
                self.body += self.buffer[: self.remaining]
                del self.buffer[: self.remaining + 2]
                self.state = "chunk_size"
            elif self.state == "trailer":
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return None
                del self.buffer[: end + 2]
                if end == 0:
                    return self._done()
            else:  # until_close
                self.body += self.buffer
                self.buffer.clear()
                return None

    def _done(self) -> Response:
        return Response(self.status, self.headers, bytes(self.body), self.close)


def check_loopback(host: str) -> None:
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise SystemExit(f"loadgen only targets loopback addresses, not {host}")


def build_requests(spec: dict, *, close: bool = False) -> list[bytes]:
    """The request's bytes, once per identity (or once)."""
    return [build_request(spec, identity, close=close) for identity in spec.get("identities") or [{}]]


def build_request(spec: dict, identity: dict, *, close: bool = False) -> bytes:
    body = json.dumps(spec["body"], separators=(",", ":")).encode() if spec.get("body") is not None else b""
    method = "POST" if body else "GET"
    headers = {
        "Host": f"{spec['host']}:{spec['port']}",
        "User-Agent": "aura-bench/1.0",
        "Accept": "*/*",
        **spec.get("headers", {}),
        **identity,
    }
    if body:
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(body))
    if close:
        headers["Connection"] = "close"
    head = f"{method} {spec['path']} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def failure(response: Response, stream: bool) -> str | None:
    """Why a complete response does not count as a success, or None."""
    if response.status != 200:
        try:  # an OpenAI-shaped error names its code (never a secret)
            code = json.loads(response.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        return f"HTTP {response.status}" + (f" {code}" if isinstance(code, str) else "")
    if stream:
        if b"data: [DONE]" not in response.body:
            return "stream without [DONE]"
        if b'"error"' in response.body:
            return "error event in stream"
    return None


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


# sequential: one blocking socket, the most accurate clock we can have in Python ---------------


class BlockingClient:
    def __init__(self, host: str, port: int, timeout: float):
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def call(self, request: bytes) -> Response:
        if self.sock is None:
            self.sock = self._connect()
        try:
            self.sock.sendall(request)
            parser = ResponseParser()
            while (response := parser.feed(self.sock.recv(RECV))) is None:
                pass
        except BaseException:
            self.close()
            raise
        if response.close:
            self.close()
        return response

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def run_sequential(spec: dict) -> dict:
    requests = build_requests(spec)
    client = BlockingClient(spec["host"], spec["port"], spec.get("timeout", 30))
    header = spec.get("collect_header")
    latencies, header_values, errors = [], [], Counter()
    answered = 0  # every HTTP 200, warm-up included: what a gateway should have accounted for
    deadline = time.monotonic() + spec.get("max_seconds", 600)
    for index in range(spec.get("warmup", 0) + spec["count"]):
        if time.monotonic() > deadline:
            errors["phase deadline reached"] += 1
            break
        measured = index >= spec.get("warmup", 0)
        started = time.perf_counter()
        try:
            response = client.call(requests[index % len(requests)])
        except (OSError, ProtocolError, ValueError) as error:
            if measured:
                errors[type(error).__name__] += 1
            continue
        elapsed = (time.perf_counter() - started) * 1000
        answered += response.status == 200
        if not measured:
            continue
        problem = failure(response, stream=False)
        if problem:
            errors[problem] += 1
            continue
        latencies.append(elapsed)
        if header and header in response.headers:
            header_values.append(float(response.headers[header]))
    client.close()
    result = {"ok": len(latencies), "errors": sum(errors.values()), "error_kinds": dict(errors.most_common(5)), "answered_200": answered}
    result["latency_ms"] = percentiles(latencies)
    if header:
        result["header"] = {"name": header, **percentiles(header_values)}
    return result


# keep-alive modes: asyncio streams over raw sockets ----------------------------------------------


async def _open(spec: dict, timeout: float):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(spec["host"], spec["port"], limit=RECV), timeout)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> Response:
    writer.write(request)
    parser = ResponseParser()
    while True:
        response = parser.feed(await reader.read(RECV))
        if response is not None:
            return response


class Pool:
    """Shared bookkeeping for the keep-alive workers of the throughput and calls modes."""

    def __init__(self, spec: dict, budget: int | None, deadline: float):
        self.spec = spec
        self.requests = build_requests(spec)
        self.workers = 0
        self.timeout = spec.get("timeout", 30)
        self.budget = budget
        self.deadline = deadline
        self.latencies: list[float] = []
        self.errors: Counter = Counter()
        self.late = 0
        self.answered = 0
        self.stream = bool(spec["body"].get("stream"))  # a streamed body must end with [DONE], no error event

    def take(self) -> bool:
        if time.perf_counter() >= self.deadline:
            return False
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    async def worker(self) -> None:
        mine = self.requests[self.workers % len(self.requests) :: self.spec.get("connections", 1)] or self.requests[:1]
        self.workers += 1
        conn = None
        sent = 0
        try:
            while self.take():
                request = mine[sent % len(mine)]
                sent += 1
                started = time.perf_counter()
                try:
                    if conn is None:
                        conn = await _open(self.spec, self.timeout)
                    response = await asyncio.wait_for(_exchange(*conn, request), self.timeout)
                except (OSError, ProtocolError, TimeoutError, ValueError) as error:
                    self.errors[type(error).__name__] += 1
                    if conn is not None:
                        conn[1].close()
                        conn = None
                    continue
                finished = time.perf_counter()
                if response.close:
                    conn[1].close()
                    conn = None
                self.answered += response.status == 200
                problem = failure(response, stream=self.stream)
                if problem:
                    self.errors[problem] += 1
                elif finished > self.deadline:
                    self.late += 1
                else:
                    self.latencies.append((finished - started) * 1000)
        finally:
            if conn is not None:
                conn[1].close()


async def run_pool(spec: dict, *, budget: int | None, duration: float) -> dict:
    started = time.perf_counter()
    pool = Pool(spec, budget, started + duration)
    await asyncio.gather(*(pool.worker() for _ in range(spec["connections"])))
    elapsed = min(time.perf_counter(), pool.deadline) - started
    return kept_alive_result(pool.latencies, pool.errors, pool.late, pool.answered, elapsed)


def kept_alive_result(latencies_ms: list[float], errors: Counter, late: int, answered: int, seconds: float) -> dict:
    """What the keep-alive modes report: calls answered in time, their rate and latency, and the rest."""
    return {
        "ok": len(latencies_ms),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "finished_after_deadline": late,
        "answered_200": answered,
        "seconds": seconds,
        "rps": len(latencies_ms) / seconds if seconds > 0 else 0.0,
        "latency_ms": percentiles(latencies_ms),
    }


# streams: a bare epoll loop --------------------------------------------------------------------
#
# The load generator shares the machine's two cores with what it measures. Through asyncio's streams
# (the version before this one) it spent 0.6-1.1 s of CPU on a burst of 1,000 streams and held back
# the upstream's own rate: 718-887 streams/s called directly, against 803-976 with this loop in the
# same runs. Here a stream costs a connect, a send and a recv per piece that arrives. A burst's
# response is parsed once, when it has ended; streams kept going on keep-alive connections are
# parsed piece by piece, since only the parser knows where an answer without a chunked end stops.


_CHUNKED_END = b"0\r\n\r\n"


class _Stream:
    __slots__ = ("sock", "requests", "sent", "request", "started", "first", "pieces", "parser")

    def __init__(self, sock: socket.socket, requests: list[bytes]):
        self.sock, self.requests, self.sent = sock, requests, 0
        self.next()

    def next(self) -> None:
        """Ready the connection's next request (its identities taken in turn)."""
        self.request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        self.started = time.perf_counter()
        self.first: float | None = None
        self.pieces: list[bytes] = []
        self.parser = ResponseParser()


def _complete(stream: _Stream, closed: bool) -> Response | None:
    """The response once the pieces hold all of it (or the peer closed); ProtocolError when they never will."""
    parser = ResponseParser()
    response = parser.feed(b"".join(stream.pieces))
    if response is None and closed:
        response = parser.feed(b"")
    return response


class _Burst:
    """Streams, each on a connection of its own, served by one epoll loop. Without ``keep_until``
    each connection makes one call and closes; with it, each streams again as soon as its stream
    ends, until that time (perf_counter), on a keep-alive connection."""

    def __init__(self, spec: dict, keep_until: float | None = None):
        self.keep_until = keep_until
        self.requests = build_requests(spec, close=keep_until is None)
        self.connections = spec.get("connections") or spec.get("streams") or 1
        self.address = (spec["host"], spec["port"])
        self.totals, self.first_bytes, self.ends, self.errors = [], [], [], Counter()
        self.answered = self.late = 0
        self.poller = select.epoll()
        self.open: dict[int, _Stream] = {}

    def start(self, index: int) -> None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as error:  # out of file descriptors, say: this stream fails, the others go on
            self.errors[type(error).__name__] += 1
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self.errors[errno.errorcode.get(code, "OSError")] += 1
            sock.close()
            return
        # Connection ``index`` takes identities index, index + n, index + 2n, ... (as the keep-alive pool does).
        mine = self.requests[index % len(self.requests) :: self.connections] or self.requests[:1]
        self.open[sock.fileno()] = _Stream(sock, mine)
        self.poller.register(sock.fileno(), select.EPOLLOUT)

    def drop(self, fd: int, why: str | None) -> None:
        stream = self.open.pop(fd)
        self.poller.unregister(fd)
        stream.sock.close()
        if why:
            self.errors[why] += 1

    def serve(self, until: float) -> None:
        """Serve the open streams until ``until`` (perf_counter) or until none is left."""
        while self.open and (wait := until - time.perf_counter()) > 0:
            for fd, _events in self.poller.poll(min(wait, 1.0)):
                self._ready(fd, self.open[fd])

    def _send(self, fd: int, stream: _Stream) -> None:
        try:
            stream.request = stream.request[stream.sock.send(stream.request) :]
        except BlockingIOError:
            return  # the socket's buffer is full: it says when it can take more
        except OSError as error:
            self.drop(fd, type(error).__name__)
            return
        self.poller.modify(fd, select.EPOLLOUT if stream.request else select.EPOLLIN)

    def _ready(self, fd: int, stream: _Stream) -> None:
        if stream.request:  # connected (or refused), or room again in the socket's buffer: send the request
            code = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.drop(fd, errno.errorcode.get(code, "OSError"))
            else:
                self._send(fd, stream)
            return
        try:
            data = stream.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError as error:
            self.drop(fd, type(error).__name__)
            return
        now = time.perf_counter()
        if data and stream.first is None:
            stream.first = now
        try:
            response = self._response(stream, data)
        except (ProtocolError, ValueError) as error:
            self.drop(fd, type(error).__name__)
            return
        if response is None:
            return
        self.answered += response.status == 200
        problem = failure(response, stream=True)
        if problem:
            self.errors[problem] += 1
        elif self.keep_until is not None and now > self.keep_until:
            self.late += 1  # answered, but after the measured time
        else:
            self.totals.append(now - stream.started)
            self.first_bytes.append(stream.first - stream.started)
            self.ends.append(now)
        if self.keep_until is not None and not response.close and now < self.keep_until:
            stream.next()
            self._send(fd, stream)
        else:
            self.drop(fd, None)

    def _response(self, stream: _Stream, data: bytes) -> Response | None:
        """The response, once ``data`` (``b""``: the peer closed) completes it."""
        if self.keep_until is not None:
            return stream.parser.feed(data)
        if data:
            stream.pieces.append(data)
            tail = data if len(data) >= len(_CHUNKED_END) or len(stream.pieces) == 1 else stream.pieces[-2][-8:] + data
            if not tail.endswith(_CHUNKED_END):  # a chunked body's end (perhaps across two reads): parse only then, or at close
                return None
        return _complete(stream, closed=not data)

    def close(self) -> None:
        for fd in list(self.open):
            self.drop(fd, "TimeoutError")
        self.poller.close()


def run_streams(spec: dict) -> dict:
    burst = _Burst(spec)
    count = spec["streams"]
    began = time.perf_counter()
    for index in range(count):  # every connection opened at once, as a thousand separate clients would
        burst.start(index)
    burst.serve(began + spec.get("timeout", 120))
    burst.close()
    ends, errors = burst.ends, burst.errors
    wall = (max(ends) - began) if ends else time.perf_counter() - began
    return {
        "streams": count,
        "ok": len(burst.totals),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(5)),
        "answered_200": burst.answered,
        "seconds": wall,
        "completed_per_s": len(burst.totals) / wall if wall > 0 else 0.0,
        "total_s": percentiles(burst.totals),
        "first_byte_s": percentiles(burst.first_bytes),
    }


def run_kept_streams(spec: dict) -> dict:
    """The throughput mode with a streamed body: ``connections`` keep-alive connections, each streaming
    again as soon as its stream ends, for ``duration`` seconds (those still under way then finish)."""
    duration = float(spec["duration"])
    began = time.perf_counter()
    burst = _Burst(spec, keep_until=began + duration)
    for index in range(spec["connections"]):
        burst.start(index)
    burst.serve(began + duration + spec.get("timeout", 30))
    burst.close()
    return kept_alive_result([seconds * 1000 for seconds in burst.totals], burst.errors, burst.late, burst.answered, duration)


def main() -> None:
    spec = json.load(sys.stdin)
    check_loopback(spec["host"])
    mode = spec["mode"]
    started = time.perf_counter()
    if mode == "sequential":
        result = run_sequential(spec)
    elif mode == "throughput" and (spec.get("body") or {}).get("stream"):
        result = run_kept_streams(spec)
    elif mode == "throughput":
        result = asyncio.run(run_pool(spec, budget=None, duration=float(spec["duration"])))
    elif mode == "calls":
        result = asyncio.run(run_pool(spec, budget=int(spec["calls"]), duration=float(spec.get("max_seconds", 600))))
    elif mode == "streams":
        result = run_streams(spec)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["loadgen_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["loadgen_wall_s"] = time.perf_counter() - started
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
