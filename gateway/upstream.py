"""The one HTTP client AURA uses to reach providers: pooled, with timeouts on every call.

urllib3 directly (requests is built on it): on this machine requests spent about 1.2 ms more
CPU per call (measured side by side against the benchmark's upstream, 2,000 calls each), more
than the rest of AURA's hot path. ``Response`` keeps the few names the pipeline reads.
"""

import itertools
import json
import time

import urllib3
from django.conf import settings
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as _Timeout

from .adapters.base import Upstream

# Many concurrent calls to the same provider share a handful of hosts: keep their connections,
# as many as a gevent worker holds requests (--worker-connections 1000), so none is discarded.
# A PoolManager never reads proxies or .netrc from the environment: keys go only where routed.
_pool = urllib3.PoolManager(num_pools=32, maxsize=1000)
USER_AGENT = "AURA-gateway/1.0"


class Timeout(Exception):
    """The provider did not answer (or go on answering) within the read timeout."""


class Unreachable(Exception):
    """No connection to the provider, or it broke."""


# What reading a streamed answer may raise when the provider's side breaks off.
StreamBroken = (HTTPError, OSError)


class Response:
    """A provider's answer: status, headers, the body (read at once, or streamed from ``raw``)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, *, streamed: bool):
        self.raw = raw
        self.unread = streamed  # a stream's body stays unread until iter_lines reaches its end

    @property
    def status_code(self) -> int:
        return self.raw.status

    @property
    def headers(self):
        return self.raw.headers  # case-insensitive

    def json(self):
        """The JSON body; ValueError when it is not JSON."""
        return json.loads(self.raw.data)

    def close(self) -> None:
        """Give the connection back to the pool, or drop it when a stream was left half read."""
        if self.unread:
            self.raw.close()
        self.raw.release_conn()


def send(upstream: Upstream, *, stream: bool = False, read_timeout: float | None = None) -> Response:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", **upstream.headers}
    if stream:
        # Compressed SSE would be buffered by the decoder; ask for the bytes as they are.
        headers.update({"Accept-Encoding": "identity", "Accept": "text/event-stream"})
    body = None
    if upstream.json is not None:
        body = json.dumps(upstream.json, allow_nan=False).encode()
        headers["Content-Type"] = "application/json"
    try:
        raw = _pool.request(
            upstream.method,
            upstream.url,
            body=body,
            headers=headers,
            preload_content=not stream,
            timeout=urllib3.Timeout(
                connect=settings.AURA_UPSTREAM_CONNECT_TIMEOUT, read=read_timeout or settings.AURA_UPSTREAM_READ_TIMEOUT
            ),
            redirect=False,
            retries=False,
        )
    except NewConnectionError:
        raise Unreachable() from None
    except _Timeout:
        raise Timeout() from None
    except (HTTPError, OSError):
        raise Unreachable() from None
    return Response(raw, streamed=stream)


DRAIN_SECONDS = 0.05


def drain(response: Response, lines) -> None:
    """Read what is left of a finished stream, so that its connection goes back to the pool.

    After its last event a provider ends the body (a chunked body's final empty chunk), usually in
    the same packet. Left unread, the connection could not be reused and the next call would open
    a new one (about half a millisecond here, more with TLS). ``lines`` is the stream's
    ``iter_lines``; a provider that does not end the body at once loses the connection instead.
    """
    raw = response.raw
    sock = getattr(raw.connection, "sock", None)
    if sock is None or not (raw.chunked or raw.length_remaining is not None):  # ends only when closed: never reusable
        return
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        sock.settimeout(DRAIN_SECONDS)  # the pool sets the next call's own timeout
        for _ in itertools.islice(lines, 64):
            if time.monotonic() > deadline:
                return
    except Exception:  # noqa: S110 -- whatever it was, response.close() drops the connection instead
        pass


def iter_lines(response: Response):
    """Yield SSE lines the moment their bytes arrive, whatever the upstream's framing."""
    raw = response.raw
    source = raw.read_chunked(decode_content=True) if raw.chunked else iter(lambda: raw.read1(65536), b"")
    buffer = b""
    for piece in source:
        buffer += piece
        while True:
            line, newline, rest = buffer.partition(b"\n")
            if not newline:
                break
            yield line.rstrip(b"\r")
            buffer = rest
    if buffer:
        yield buffer
    response.unread = False
