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
"""

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


def install() -> None:
    wsgi.Response = Response
