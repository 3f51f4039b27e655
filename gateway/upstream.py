"""The one HTTP client AURA uses to reach providers: pooled, with timeouts on every call."""

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from .adapters.base import Upstream

_session = requests.Session()
# Many concurrent calls to the same provider share a handful of hosts: keep their connections,
# as many as a gevent worker holds requests (--worker-connections 1000), so none is discarded.
_session.mount("https://", HTTPAdapter(pool_connections=32, pool_maxsize=1000))
_session.mount("http://", HTTPAdapter(pool_connections=32, pool_maxsize=1000))
_session.headers["User-Agent"] = "AURA-gateway/1.0"
# Never pick up proxies or .netrc credentials from the environment: keys go only where routed.
_session.trust_env = False


def send(upstream: Upstream, *, stream: bool = False, read_timeout: float | None = None) -> requests.Response:
    headers = upstream.headers
    if stream:
        # Compressed SSE would be buffered by the decoder; ask for the bytes as they are.
        headers = {**headers, "Accept-Encoding": "identity", "Accept": "text/event-stream"}
    return _session.request(
        upstream.method,
        upstream.url,
        json=upstream.json,
        headers=headers,
        stream=stream,
        timeout=(settings.AURA_UPSTREAM_CONNECT_TIMEOUT, read_timeout or settings.AURA_UPSTREAM_READ_TIMEOUT),
        allow_redirects=False,
    )


def iter_lines(response: requests.Response):
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
