"""The one HTTP client AURA uses to reach providers: HTTP/1.1, pooled, with timeouts on every call.

AURA asks little of HTTP: a JSON request, and a JSON answer or a Server-Sent Events stream. This
client does exactly that and nothing else, because on the /v1 hot path a general one cost more
than all of AURA's own work: urllib3 (and http.client under it) spent per call about a fifth of a
streamed call's CPU here (bench/gateway.py under py-spy), mostly checking a pooled connection with
a poll object, sending the head and the body in two writes, and parsing the response head through
the email package; requests cost 1.2 ms more again. Here a request is one write, the head is split
by hand, a chunked body is read piece by piece as its bytes arrive, and a pooled connection is
checked with one zero-timeout poll.

What it keeps of a careful client: a connect timeout and a read timeout on every socket operation;
TLS with the system's certificate store and host name checks; a connection goes back to the pool
only when its answer was read to the end and the server did not ask to close it, and is dropped
when found closed or holding stray bytes; gzip and deflate answers are decoded. It never reads
proxies or .netrc from the environment: keys go only where routed. ``Response`` keeps the few
names the pipeline reads.
"""

import functools
import ipaddress
import itertools
import json
import re
import socket
import ssl
import threading
import time
import zlib
from collections import OrderedDict
from urllib.parse import quote, urlsplit

from django.conf import settings

from .adapters.base import Upstream

try:  # a pooled connection is checked with the system's poll, not gevent's cooperative one
    from gevent import getcurrent
    from gevent import socket as _gevent_socket
    from gevent.hub import get_hub
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover -- gevent is a dependency (the web workers)
    from select import poll as _poll

    _gevent_socket = None
from select import POLLERR, POLLHUP, POLLIN

USER_AGENT = "AURA-gateway/1.0"
# Idle connections kept per host: as many as a gevent worker holds requests (--worker-connections).
POOL_SIZE = 1000
# Hosts with idle connections kept (the least recently used host's are closed beyond), and how
# long an idle connection is kept: a custom base URL may name any host, and a connection its
# server has closed would otherwise hold a file descriptor until its host was called again.
POOL_HOSTS = 32
IDLE_SECONDS = 60
MAX_HEAD_BYTES = 64 * 1024
READ_SIZE = 65536
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class Timeout(Exception):
    """The provider did not answer (or go on answering) within the read timeout."""


class Unreachable(Exception):
    """No connection to the provider, or it broke."""


class Insecure(Exception):
    """Plain http where keys may travel only over TLS (``AURA_UPSTREAM_ALLOW_PRIVATE`` off): nothing was sent."""


class PrivateAddress(Exception):
    """The host resolved to an address that is not public (``AURA_UPSTREAM_ALLOW_PRIVATE`` off): nothing was sent."""


class ProtocolError(Exception):
    """The provider's side of the connection did not speak HTTP/1.1 as expected (or closed early)."""


# What reading a streamed answer may raise when the provider's side breaks off.
StreamBroken = (OSError, ProtocolError, zlib.error)

# Per process: connections opened and requests sent (tests and benchmarks read them).
counts = {"opened": 0, "requests": 0}


class Headers(dict):
    """Response headers by lower-case name; any spelling finds them."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name) -> bool:
        return super().__contains__(name.lower())

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


# connections -------------------------------------------------------------------------------------


def _expire(greenlet) -> None:
    greenlet.throw(TimeoutError("timed out"))


class _Connection:
    """A connection to a provider, with the timeout every read and write on it has (``set_timeout``).

    Under gevent (the web workers) the socket itself has none: gevent would make a timeout object
    and a timer for each wait, that is for each chunk of a stream (4 % of the workers' CPU in
    bench/gateway.py's burst, py-spy). Instead the connection keeps a timer per timeout it is given
    (a read timeout, a drain's), started around each read or write and stopped after it; when it
    fires, the operation raises ``TimeoutError`` as the socket's own timeout would. Other sockets
    (threads, no gevent) keep their own timeout.
    """

    __slots__ = ("sock", "origin", "buffer", "idle_since", "fills", "timeout", "_timers")

    def __init__(self, sock, origin: tuple):
        self.sock = sock
        self.origin = origin
        self.buffer = b""
        self.idle_since = 0.0
        self.fills = 0  # reads from the network so far
        self.timeout = sock.gettimeout()
        self._timers = {}  # gevent's, by their seconds (a read timeout, and a drain's): each made on first use

    def set_timeout(self, seconds: float) -> None:
        if self.timeout == seconds:
            return
        self.timeout = seconds
        if _gevent_socket is not None and isinstance(self.sock, _gevent_socket.socket):
            self.sock.settimeout(None)  # the timer keeps it (the socket stays non-blocking underneath)
        else:
            self.sock.settimeout(seconds)

    def _io(self, operation, argument):
        """``operation(argument)`` on the socket, within the connection's timeout."""
        if self.sock.gettimeout() is not None or self.timeout is None:
            return operation(argument)
        timer = self._timers.get(self.timeout)
        if timer is None:
            timer = self._timers[self.timeout] = get_hub().loop.timer(self.timeout)
        timer.start(_expire, getcurrent(), update=True)
        try:
            return operation(argument)
        finally:
            timer.stop()

    def recv(self) -> bytes:
        return self._io(self.sock.recv, READ_SIZE)

    def send(self, data: bytes) -> None:
        # One send nearly always takes the whole request; gevent's sendall would first ask the kernel
        # for the send buffer's size (a system call per request).
        sent = self._io(self.sock.send, data)
        if sent < len(data):
            self._io(self.sock.sendall, memoryview(data)[sent:])

    def fill(self) -> None:
        data = self.recv()
        if not data:
            raise ProtocolError("closed by the provider")
        self.buffer = self.buffer + data if self.buffer else data
        self.fills += 1

    def line(self, limit: int = MAX_HEAD_BYTES) -> bytes:
        """The next line, without its line break."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
                return line.rstrip(b"\r")
            if len(self.buffer) > limit:
                raise ProtocolError("line too long")
            self.fill()

    def some(self, most: int) -> bytes:
        """What has arrived, up to ``most`` bytes (waiting for something if nothing has)."""
        if not self.buffer:
            self.fill()
        piece, self.buffer = self.buffer[:most], self.buffer[most:]
        return piece

    def usable(self) -> bool:
        """An idle connection the server has not closed and has sent nothing on since."""
        pending = getattr(self.sock, "pending", None)  # TLS: bytes already decrypted
        if self.buffer or (pending is not None and pending()):
            return False
        try:
            poller = _poll()
            poller.register(self.sock.fileno(), POLLIN | POLLERR | POLLHUP)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        for timer in self._timers.values():
            timer.close()
        self._timers.clear()
        try:
            self.sock.close()
        except OSError:
            pass


_idle: OrderedDict[tuple, list[_Connection]] = OrderedDict()  # per origin, the most recently used last
_idle_lock = threading.Lock()  # held only for list and dict work, never across I/O
_swept = 0.0
_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """Built on first use, after gevent (if any) has patched ``ssl``; verifies certificates and host names."""
    global _tls
    if _tls is None:
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        _tls = context
    return _tls


def _checkout(origin: tuple) -> _Connection | None:
    while True:
        with _idle_lock:
            idle = _idle.get(origin)
            conn = idle.pop() if idle else None
        if conn is None:
            return None
        if conn.usable() and time.monotonic() - conn.idle_since < IDLE_SECONDS:
            return conn
        conn.close()


def _checkin(conn: _Connection) -> None:
    global _swept
    now = conn.idle_since = time.monotonic()
    closing = []
    with _idle_lock:
        idle = _idle.get(conn.origin)
        if idle is None:
            idle = _idle[conn.origin] = []
            while len(_idle) > POOL_HOSTS:
                closing += _idle.popitem(last=False)[1]
        else:
            _idle.move_to_end(conn.origin)
        if len(idle) < POOL_SIZE:
            idle.append(conn)
        else:
            closing.append(conn)
        if now - _swept > 10:
            _swept = now
            for origin, conns in list(_idle.items()):
                fresh = [c for c in conns if now - c.idle_since < IDLE_SECONDS]
                closing += [c for c in conns if now - c.idle_since >= IDLE_SECONDS]
                if fresh:
                    _idle[origin] = fresh
                else:
                    del _idle[origin]
    for stale in closing:
        stale.close()


def idle_connections() -> int:
    """Connections this process keeps open for later calls (tests)."""
    with _idle_lock:
        return sum(len(conns) for conns in _idle.values())


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: str) -> bool:
    """A global address, and for an IPv6 one that carries an IPv4 address (mapped, 6to4, NAT64's
    64:ff9b::/96, which is_global passes), that IPv4 address global too."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if not ip.is_global:
        return False
    if ip.version == 6:
        low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        embedded = ip.ipv4_mapped or ip.sixtofour or (low if ip in _NAT64 or int(ip) >> 32 == 0 else None)  # (::a.b.c.d too)
        return embedded is None or embedded.is_global
    return True


def _public_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, each checked as the base URL was when its key was saved: a name can
    resolve elsewhere later (DNS rebinding), so the check that counts is the one at connect time,
    and the connection is made to an address it passed."""
    addresses = list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
    if not all(is_public(address) for address in addresses):
        raise PrivateAddress()
    return addresses


def _open(host: str, port: int, connect_timeout: float) -> socket.socket:
    if settings.AURA_UPSTREAM_ALLOW_PRIVATE:
        return socket.create_connection((host, port), timeout=connect_timeout)
    failure = None
    for address in _public_addresses(host, port):
        try:
            return socket.create_connection((address, port), timeout=connect_timeout)
        except OSError as error:
            failure = error
    raise failure


def _connect(origin: tuple, connect_timeout: float) -> _Connection:
    scheme, host, port, _ = origin
    sock = _open(host, port, connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = _tls_context().wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise
    counts["opened"] += 1
    return _Connection(sock, origin)


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[tuple, str]:
    """(origin, request target) of a URL: origin is (scheme, host, port, Host header)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = parts.hostname
    if not host.isascii():
        host = host.encode("idna").decode("ascii")  # the name DNS and the certificate know
    shown = f"[{host}]" if ":" in host else host
    header = shown if port == default else f"{shown}:{port}"
    safe = "/%:@!$&'()*+,;=-._~"  # what a path may hold as it is; anything else is percent-encoded
    target = quote(parts.path or "/", safe=safe) + (f"?{quote(parts.query, safe=safe + '?')}" if parts.query else "")
    return (parts.scheme, host, port, header), target


def _head(method: str, target: str, host: str, headers: dict, length: int | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        value = str(value)
        if any(c in name or c in value for c in "\r\n\0") or not name:
            raise ValueError("a header name or value with a line break")  # never the value itself: it may be a key
        lines.append(f"{name}: {value}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# responses ---------------------------------------------------------------------------------------


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not _HEX.fullmatch(digits):
        raise ProtocolError("bad chunk size")
    return int(digits, 16)


def _chunked_end_in(buffer: bytes, left: int | None) -> bool:
    """Whether ``buffer`` holds the rest of a chunked body through its end (``left``: data bytes
    still due in the current chunk, or None when a size line comes next)."""
    at = 0
    if left is not None:  # the current chunk's data, then its line break
        at = buffer.find(b"\n", left) + 1
        if not at:
            return False
    while True:
        end = buffer.find(b"\n", at)
        if end < 0:
            return False
        try:
            size = _chunk_size(buffer[at:end])
        except ProtocolError:
            return True  # reading it fails at once, without waiting
        at = end + 1
        if size == 0:
            while True:  # trailers, then the empty line
                end = buffer.find(b"\n", at)
                if end < 0:
                    return False
                if not buffer[at:end].rstrip(b"\r"):
                    return True
                at = end + 1
        at = buffer.find(b"\n", at + size) + 1
        if not at:
            return False


class Response:
    """A provider's answer: status, headers, and the body (read at once, or streamed with ``iter_bytes``)."""

    def __init__(self, conn: _Connection, status: int, headers: Headers, *, framing: str, length: int, reusable: bool):
        self._conn = conn
        self.status_code = status
        self.headers = headers
        self._framing = framing  # "length", "chunked", "close" (until the server closes) or "none"
        self._left = length
        self._chunk_left = None  # chunked: data bytes left in the current chunk (None: its size line comes next)
        self._rest_checked = -1  # the connection's read count when the rest was last found missing
        self._rest_here = False
        self._reusable = reusable
        self.complete = framing == "none" or (framing == "length" and length == 0)
        self.content = b""
        encoding = headers.get("content-encoding", "").strip().lower()
        self._decoder = (
            zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip") else (_Deflate() if encoding == "deflate" else None)
        )
        if self.complete:
            self._release()

    @property
    def reusable(self) -> bool:
        """Whether its connection can serve another request once the body is read to the end."""
        return self._reusable and self._framing != "close"

    def json(self):
        """The JSON body (read by ``send``); ValueError when it is not JSON."""
        return json.loads(self.content)

    def iter_bytes(self):
        """The body's bytes, decoded, each piece as soon as it has arrived."""
        decoder = self._decoder
        for piece in self._raw_pieces():
            if decoder is not None:
                piece = decoder.decompress(piece)
            if piece:
                yield piece
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                yield tail
        self.complete = True
        self._release()

    def read(self) -> bytes:
        self.content = b"".join(self.iter_bytes())
        return self.content

    def _raw_pieces(self):
        conn = self._conn
        if self._framing == "length":
            while self._left:
                piece = conn.some(self._left)
                self._left -= len(piece)
                yield piece
        elif self._framing == "chunked":
            while True:
                size = _chunk_size(conn.line())
                if size == 0:
                    while conn.line():  # trailers, then the empty line
                        pass
                    return
                self._chunk_left = size
                while self._chunk_left:
                    piece = conn.some(self._chunk_left)
                    self._chunk_left -= len(piece)
                    yield piece
                if conn.line():
                    raise ProtocolError("chunk longer than its size")
                self._chunk_left = None
        elif self._framing == "close":
            if conn.buffer:
                piece, conn.buffer = conn.buffer, b""
                yield piece
            while data := conn.recv():
                yield data

    def rest_buffered(self) -> bool:
        """Whether the rest of the body has already arrived: reading it to its end will not wait.

        A relay that knows this can send what is left in one write instead of one per event (the
        last events of a stream and its end usually arrive together). Looked for once per read.
        """
        conn = self._conn
        if conn is None or self.complete or self._rest_here:
            return True
        if self._framing == "length":
            return len(conn.buffer) >= self._left
        if self._framing != "chunked" or conn.fills == self._rest_checked:
            return False
        if _chunked_end_in(conn.buffer, self._chunk_left):
            self._rest_here = True  # and stays so: nothing more comes from the network
            return True
        self._rest_checked = conn.fills
        return False

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if self.reusable and self.complete and not conn.buffer:
                _checkin(conn)
            else:
                conn.close()

    def close(self) -> None:
        """Give the connection back to the pool when the body was read to the end, else drop it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # still holding it: the body was not read to its end


class _Deflate:
    """'deflate' is zlib-wrapped by the standard and sometimes raw in practice: the first two bytes tell which."""

    def __init__(self):
        self._inner = None
        self._head = b""

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            first, second = self._head[0], self._head[1]
            wrapped = first & 0x0F == 8 and (first * 256 + second) % 31 == 0
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""


def _read_head(conn: _Connection) -> tuple[int, Headers, bool]:
    """Status, headers and whether the server keeps the connection open; informational answers skipped."""
    while True:
        status_line = conn.line()
        while not status_line:  # tolerated: empty lines before the status line
            status_line = conn.line()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
            raise ProtocolError("not an HTTP/1.x status line")
        status = int(parts[1])
        headers = Headers()
        size = len(status_line)
        last = None
        while line := conn.line():
            size += len(line)
            if size > MAX_HEAD_BYTES:
                raise ProtocolError("response head too large")
            if line[:1] in (b" ", b"\t") and last:  # an obsolete folded line continues the last header
                headers[last] += " " + line.strip().decode("latin-1")
                continue
            name, colon, value = line.partition(b":")
            if not colon:
                raise ProtocolError("bad header line")
            last = name.strip().decode("latin-1").lower()
            value = value.strip().decode("latin-1")
            headers[last] = f"{dict.get(headers, last)}, {value}" if last in headers else value
        if 100 <= status < 200 and status != 101:
            continue
        keep = parts[0] == b"HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        return status, headers, keep


def _respond(conn: _Connection, method: str) -> Response:
    status, headers, keep = _read_head(conn)
    if method == "HEAD" or status in (204, 304):
        return Response(conn, status, headers, framing="none", length=0, reusable=keep)
    length = headers.get("content-length")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        # Both framings at once is how responses get smuggled: read it chunked, never reuse the connection.
        return Response(conn, status, headers, framing="chunked", length=0, reusable=keep and length is None)
    if length is not None:
        values = {value.strip() for value in length.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit() or not next(iter(values)).isascii():
            raise ProtocolError("bad Content-Length")
        return Response(conn, status, headers, framing="length", length=int(values.pop()), reusable=keep)
    return Response(conn, status, headers, framing="close", length=0, reusable=False)


# the call ----------------------------------------------------------------------------------------


def send(upstream: Upstream, *, stream: bool = False, read_timeout: float | None = None) -> Response:
    """Send a request and read the answer's head (and, unless ``stream``, its whole body).

    Raises ``Insecure`` for plain http where only TLS is allowed (before anything is sent),
    ``Unreachable`` when no connection could be made or it broke, ``Timeout`` when the
    provider stopped answering for longer than the read timeout.
    """
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", **upstream.headers}
    if stream:
        # Compressed SSE would be held back by the decoder; ask for the bytes as they are.
        headers.update({"Accept-Encoding": "identity", "Accept": "text/event-stream"})
    body = None
    if upstream.json is not None:
        body = json.dumps(upstream.json, allow_nan=False).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    try:
        origin, target = _target(upstream.url)
        request = _head(upstream.method, target, origin[3], headers, None if body is None else len(body))
    except ValueError:  # not an http(s) URL, or a header no request may carry (the message never quotes it)
        raise Unreachable() from None
    if origin[0] != "https" and not settings.AURA_UPSTREAM_ALLOW_PRIVATE:
        raise Insecure()  # keys travel only over TLS (the privacy policy), a URL saved before that rule included
    if body is not None:
        request += body
    read_timeout = read_timeout or settings.AURA_UPSTREAM_READ_TIMEOUT
    conn = _checkout(origin)
    try:
        if conn is None:
            try:
                conn = _connect(origin, settings.AURA_UPSTREAM_CONNECT_TIMEOUT)
            except TimeoutError:  # no answer to connect (or to the TLS handshake) in time
                raise Timeout() from None
            except OSError:  # refused, unresolvable, TLS refused
                raise Unreachable() from None
        conn.set_timeout(read_timeout)
        counts["requests"] += 1
        conn.send(request)
        response = _respond(conn, upstream.method)
        if not stream or response.status_code >= 400:  # an error is read whole, streamed or not: it says what went wrong
            response.read()
    except (Unreachable, Timeout):
        raise
    except TimeoutError:
        conn.close()
        raise Timeout() from None
    except (OSError, ProtocolError, zlib.error):
        conn.close()
        raise Unreachable() from None
    return response


DRAIN_SECONDS = 0.05


def drain(response: Response, lines) -> None:
    """Read what is left of a finished stream, so that its connection goes back to the pool.

    After its last event a provider ends the body (a chunked body's final empty chunk), usually in
    the same packet. Left unread, the connection could not be reused and the next call would open
    a new one (about half a millisecond here, more with TLS). ``lines`` is the stream's
    ``iter_lines``; a provider that does not end the body at once loses the connection instead.
    """
    conn = response._conn
    if conn is None or response.complete or not response.reusable:  # done, or ends only when closed
        return
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        conn.set_timeout(DRAIN_SECONDS)  # the next request sets its own
        for _ in itertools.islice(lines, 64):
            if time.monotonic() > deadline:
                return
    except Exception:  # noqa: S110 -- whatever it was, response.close() drops the connection instead
        pass


def iter_lines(response: Response):
    """Yield SSE lines the moment their bytes arrive, whatever the upstream's framing."""
    buffer = b""
    for piece in response.iter_bytes():
        buffer += piece
        while True:
            line, newline, rest = buffer.partition(b"\n")
            if not newline:
                break
            yield line.rstrip(b"\r")
            buffer = rest
    if buffer:
        yield buffer
