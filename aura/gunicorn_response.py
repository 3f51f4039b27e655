"""gunicorn's HTTP/1 response for AURA's web processes: the head leaves with the first body bytes.

gunicorn sends a response's head in a write of its own, then each body piece in another, each
through gevent's ``sendall`` (which first asks the kernel for the socket's buffer size). Over
loopback a write is what a response costs most: in bench/gateway.py's burst of a thousand streams,
a fifth of the workers' time went to ``send``. Here the head is held until the body's first bytes
(or the end of the response) and leaves with them: a JSON answer with its Content-Length takes one
write instead of two, a stream two fewer (``write_last``: its final piece takes the body's end
along, see aura.handlers). A piece that fits the socket's buffer takes one ``send``.

What goes on the wire is byte for byte what gunicorn sends; only the number of writes changes.
``install()`` makes gunicorn build these (it looks its response class up when each request comes).

``install()`` also replaces the page gunicorn writes itself for a request it cannot parse (a request
line over 4094 bytes, a NUL or a missing colon in a header, a broken chunked body): an error in
OpenAI's shape, as every other /v1 answer, instead of an HTML page. gunicorn's own message quotes
what it could not parse (a header line with no colon, ``Authorization Bearer aura_...``, arrives
whole), so it is not sent back: the status says which limit or rule the request broke.
"""

import json

from gunicorn import util
from gunicorn.http import wsgi

_LAST_CHUNK = b"0\r\n\r\n"


class Response(wsgi.Response):
    _head = b""
    _eager = False  # sendfile writes straight to the socket: the head must already be there
    _last = False  # the piece being written is the body's last (chunked: its end goes with it)
    _ended = False

    def send_headers(self):
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self._head = f"{''.join(lines)}\r\n".encode("latin-1")
        self.headers_sent = True  # committed: the application can no longer change them
        if self._eager:
            self._send(b"")

    def write_last(self, data: bytes) -> None:
        """Write the body's last piece; a chunked body's end leaves with it, in the same write."""
        self._last = True
        try:
            self.write(data)
        finally:
            self._last = False

    def _emit_body(self, data):
        if self.chunked:
            data = b"%X\r\n%b\r\n" % (len(data), data)
            if self._last:
                data, self._ended = data + _LAST_CHUNK, True
        self._send(data)

    def sendfile(self, respiter):
        self._eager = True
        try:
            return super().sendfile(respiter)
        finally:
            self._eager = False

    def close(self):
        if not self.headers_sent:
            self.send_headers()
        self._send(_LAST_CHUNK if self.chunked and not self._ended else b"")

    def _send(self, data: bytes) -> None:
        if self._head:
            data, self._head = self._head + data, b""
        if data:
            sent = self.sock.send(data)
            if sent < len(data):
                util.write(self.sock, data[sent:])


# By the status gunicorn chose: (message, type, code).
_PROTOCOL_ERRORS = {
    400: (
        "The request is not valid HTTP/1.1: check its request line, its headers (name: value, no control characters) and its chunks.",
        "invalid_request_error",
        "invalid_http_request",
    ),
    403: ("This request is forbidden.", "invalid_request_error", "forbidden"),
    414: ("The request line is too long: send long input in the body.", "invalid_request_error", "request_line_too_long"),
    417: ("Expectation failed: only 'Expect: 100-continue' is supported.", "invalid_request_error", "expectation_failed"),
    431: ("The request's header fields are too large or too many.", "invalid_request_error", "headers_too_large"),
    501: (
        "This Transfer-Encoding is not supported: send the body with a Content-Length or chunked.",
        "invalid_request_error",
        "unsupported_transfer_encoding",
    ),
}
_SERVER_ERROR = ("The server had an error while processing your request.", "server_error", None)


def write_error(sock, status_int, reason, mesg):
    """gunicorn's answer to a request it could not parse or serve, in OpenAI's error shape."""
    message, kind, code = _PROTOCOL_ERRORS.get(status_int, _SERVER_ERROR)
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
    head = f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    wsgi.Response = Response
    util.write_error = write_error
