"""AURA's HTTP client against a real loopback server that answers each request with scripted bytes.

The /v1 tests drive it against the mock provider; these cover what a provider may do on the wire
that the mock does not: other framings, compression, informational answers, closed connections,
a broken or slow answer, and TLS with a certificate the system does not trust.
"""

import datetime
import gzip
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import upstream
from gateway.adapters.base import Upstream


class Scripted:
    """A TCP server on 127.0.0.1: each accepted connection answers its requests with the next scripts."""

    def __init__(self, *answers: bytes | list[bytes], close_after: bool = False, tls: ssl.SSLContext | None = None):
        self.answers = list(answers)
        self.close_after = close_after
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.go = threading.Event()  # what a "<wait>" part waits for
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/v1/chat/completions"

    def _serve(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(sock,), daemon=True).start()

    def _talk(self, sock):
        try:
            if self.tls:
                sock = self.tls.wrap_socket(sock, server_side=True)
            while self.answers:
                request = self._read_request(sock)
                if request is None:
                    return
                self.requests.append(request)
                answer = self.answers.pop(0)
                for part in answer if isinstance(answer, list) else [answer]:
                    if part == b"<pause>":
                        threading.Event().wait(0.3)
                    elif part == b"<wait>":
                        self.go.wait(5)
                    else:
                        sock.sendall(part)
                if self.close_after:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    @staticmethod
    def _read_request(sock) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                return None
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += sock.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self):
        self.listener.close()


@pytest.fixture
def serve(settings):
    settings.AURA_UPSTREAM_READ_TIMEOUT = 2
    servers = []

    def start(*answers, **options):
        server = Scripted(*answers, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def post(url: str, **options):
    return upstream.send(Upstream("POST", url, {"Authorization": "Bearer sk-test-secret"}, {"model": "m", "messages": []}), **options)


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


def test_a_request_is_one_write_with_its_head_and_json_body(serve):
    server = serve(ok(b'{"id": 1}'))
    response = post(server.url)
    assert response.status_code == 200 and response.json() == {"id": 1}
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines and "Authorization: Bearer sk-test-secret" in lines
    assert f"Content-Length: {len(body)}" in lines and body == b'{"model": "m", "messages": []}'


def test_a_request_larger_than_one_send_takes_arrives_whole(serve):
    server = serve(ok(b"{}"))
    text = "".join(f"line {n} of a long prompt\n" for n in range(800_000))  # ~20 MB: more than a socket buffer holds
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    assert upstream.send(Upstream("POST", server.url, {}, body)).status_code == 200
    assert json.loads(server.requests[0].partition(b"\r\n\r\n")[2]) == body


def test_connections_are_kept_and_reused_and_headers_read_in_any_case(serve):
    server = serve(ok(b"{}", "Retry-After: 3"), ok(b"{}"), ok(b"{}"))
    first = post(server.url)
    assert first.headers["retry-after"] == "3" and "RETRY-AFTER" in first.headers and first.headers.get("Retry-After") == "3"
    post(server.url)
    post(server.url)
    assert server.connections == 1


def test_a_chunked_body_with_extensions_and_trailers_is_read_whole(serve):
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=x\r\n{"a":\r\n3\r\n 1}\r\n0\r\nX-Trailer: y\r\n\r\n'
    server = serve(chunked, ok(b"{}"))
    assert post(server.url).json() == {"a": 1}
    post(server.url)
    assert server.connections == 1  # read to its end: the connection served the next call


@pytest.mark.parametrize(
    "encoding, packed",
    [
        ("gzip", gzip.compress(b'{"z": "zipped"}')),
        ("deflate", zlib.compress(b'{"z": "zipped"}')),
        ("deflate", zlib.compress(b'{"z": "zipped"}')[2:-4]),  # raw deflate, as some servers send it
    ],
)
def test_compressed_answers_are_decoded(serve, encoding, packed):
    server = serve(ok(packed, f"Content-Encoding: {encoding}"))
    assert post(server.url).json() == {"z": "zipped"}


def test_an_answer_that_ends_when_the_server_closes_is_read_to_the_end_and_not_reused(serve):
    server = serve(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"until": "closed"}', ok(b"{}"), close_after=True)
    assert post(server.url).json() == {"until": "closed"}
    post(server.url)
    assert server.connections == 2


def test_connection_close_is_honoured(serve):
    server = serve(ok(b"{}", "Connection: close"), ok(b"{}"), close_after=True)
    post(server.url)
    post(server.url)
    assert server.connections == 2


def test_informational_answers_are_skipped(serve):
    server = serve(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b'{"after": "100"}'))
    assert post(server.url).json() == {"after": "100"}


def test_a_pooled_connection_the_server_closed_is_not_used(serve):
    server = serve(ok(b"{}"), ok(b'{"fresh": true}'), close_after=True)
    post(server.url)  # the server closes this connection right after answering
    threading.Event().wait(0.2)
    assert post(server.url).json() == {"fresh": True}
    assert server.connections == 2


def test_a_stream_is_read_piece_by_piece_as_it_arrives(serve):
    events = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]
    chunks = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = serve([head + chunks[0], b"<wait>", chunks[1], chunks[2] + b"0\r\n\r\n"], ok(b"{}"))
    response = post(server.url, stream=True)
    lines = upstream.iter_lines(response)
    assert next(lines) == b'data: {"n": 1}'  # while the server holds the rest back (else: a read timeout)
    server.go.set()
    assert [line for line in lines if line] == [b'data: {"n": 2}', b"data: [DONE]"]
    response.close()
    post(server.url)
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].decode()
    assert "Accept-Encoding: identity" in head and "Accept: text/event-stream" in head


def test_a_stream_knows_when_the_rest_of_its_body_has_arrived(serve):
    """Once the rest of a body is here, a relay may send what is left in one write: never before."""
    events = [b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n', b"data: [DONE]\n\n"]
    chunks = [b"%x\r\n%s\r\n" % (len(event), event) for event in events]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    end = b"0\r\n\r\n"
    # The second event alone; then the third with the end but for its last byte; then that byte.
    server = serve(
        [head + chunks[0], b"<wait>", chunks[1], b"<pause>", chunks[2] + end[:-1], b"<pause>", end[-1:]],
        [head + chunks[0], b"<pause>", chunks[1], b"<pause>", chunks[2] + end],
    )
    response = post(server.url, stream=True)
    lines = upstream.iter_lines(response)
    assert next(lines) == b'data: {"n": 1}'
    assert not response.rest_buffered()  # the server has sent nothing more yet
    server.go.set()
    assert [next(lines), next(lines)] == [b"", b'data: {"n": 2}']
    assert not response.rest_buffered()  # more is due
    assert [next(lines), next(lines)] == [b"", b"data: [DONE]"]
    assert not response.rest_buffered()  # the end has come but for one byte
    assert list(lines) == [b""]
    response.close()
    # The same stream, its last event arriving with the whole end, over the same connection.
    response = post(server.url, stream=True)
    lines = upstream.iter_lines(response)
    assert [next(lines), next(lines), next(lines)] == [b'data: {"n": 1}', b"", b'data: {"n": 2}']
    assert not response.rest_buffered()
    assert [next(lines), next(lines)] == [b"", b"data: [DONE]"]
    assert response.rest_buffered()  # reading on will not wait
    assert list(lines) == [b""]
    response.close()
    assert server.connections == 1


def test_a_stream_left_half_read_drops_its_connection(serve):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = serve([head + b"9\r\ndata: x\n\n\r\n", b"<wait>", b"0\r\n\r\n"], ok(b"{}"))
    response = post(server.url, stream=True)
    assert next(upstream.iter_lines(response)) == b"data: x"
    response.close()  # the client left: the rest of this body will never be read
    post(server.url)
    server.go.set()
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",  # closes short of its length
        b"HTTP/1.1 200 OK\r\nbroken header line\r\n\r\n",
    ],
)
def test_an_answer_that_is_not_http_is_unreachable_not_a_crash(serve, answer):
    server = serve(answer, close_after=True)
    with pytest.raises(upstream.Unreachable):
        post(server.url)


def test_a_silent_provider_times_out(serve, settings):
    settings.AURA_UPSTREAM_READ_TIMEOUT = 0.2
    server = serve([b"<pause>", ok(b"{}")])
    with pytest.raises(upstream.Timeout):
        post(server.url)


def test_a_refused_connection_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(upstream.Unreachable):
        post(f"http://127.0.0.1:{port}/v1/chat/completions")


def test_a_header_with_a_line_break_is_refused_without_echoing_it(serve):
    server = serve(ok(b"{}"))
    with pytest.raises(upstream.Unreachable) as caught:
        upstream.send(Upstream("GET", server.url, {"Authorization": "Bearer sk-secret\r\nX-Evil: 1"}))
    assert "sk-secret" not in str(caught.value) and "sk-secret" not in repr(caught.value.__context__)
    assert server.requests == []


def test_the_path_is_percent_encoded_and_content_type_sent_once(serve):
    server = serve(ok(b"{}"))
    upstream.send(Upstream("POST", server.url.replace("/chat/completions", "/my models/é"), {"content-type": "application/json"}, {}))
    head = server.requests[0].split(b"\r\n\r\n")[0].decode().split("\r\n")
    assert head[0] == "POST /v1/my%20models/%C3%A9 HTTP/1.1"
    assert [line.lower() for line in head].count("content-type: application/json") == 1


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 2\r\nContent-Length: 20",  # two lengths: which one ends the body?
        b"Content-Length: +2",
        b"Content-Length: \xd9\xa2",  # a digit, but not an ASCII one
    ],
)
def test_an_ambiguous_length_is_refused(serve, framing):
    server = serve(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n{}" + b" " * 18, close_after=True)
    with pytest.raises(upstream.Unreachable):
        post(server.url)


def test_a_body_framed_both_ways_is_read_chunked_and_its_connection_not_reused(serve):
    both = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    server = serve(both, ok(b"{}"))
    assert post(server.url).json() == {}
    post(server.url)
    assert server.connections == 2


def test_idle_connections_are_bounded_by_host_and_age(serve, monkeypatch):
    monkeypatch.setattr(upstream, "POOL_HOSTS", 2)
    servers = [serve(ok(b"{}"), ok(b"{}")) for _ in range(3)]
    for server in servers:
        post(server.url)
    assert upstream.idle_connections() <= 2  # the first host's connection was closed to keep two hosts
    monkeypatch.setattr(upstream, "IDLE_SECONDS", 0)
    post(servers[2].url)  # its idle connection is too old: a new one, and the old one closed
    assert servers[2].connections == 2


def self_signed() -> tuple[ssl.SSLContext, str]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and that certificate (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
        cert_file.write(cert_pem)
        key_file.write(key_pem)
        cert_file.flush()
        key_file.flush()
        context.load_cert_chain(cert_file.name, key_file.name)
    return context, cert_pem.decode()


def test_tls_is_verified_against_the_system_store(serve, monkeypatch):
    tls, cert = self_signed()
    server = serve(ok(b'{"over": "tls"}'), tls=tls)
    with pytest.raises(upstream.Unreachable):  # a certificate nobody vouches for
        post(server.url)
    trusting = ssl.create_default_context(cadata=cert)
    monkeypatch.setattr(upstream, "_tls", trusting)  # as if the system trusted it: then the call goes through
    assert post(server.url).json() == {"over": "tls"}


def test_an_error_answer_to_a_stream_is_read_whole(serve):
    """A refused stream is a JSON error, not events: the pipeline reads its type and code (never its message)."""
    error = b'{"error": {"type": "rate_limit", "code": "slow_down"}}'
    server = serve(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error), ok(b"{}"))
    response = post(server.url, stream=True)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == "slow_down"
    response.close()
    post(server.url)
    assert server.connections == 1


def test_no_answer_to_connect_is_a_timeout(settings):
    """A provider whose host takes no new connections (its queue full, SYNs dropped) times out: 504, as a read would."""
    settings.AURA_UPSTREAM_CONNECT_TIMEOUT = 0.3
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        waiting = []
        try:
            for _ in range(4):  # fill the accept queue: nobody accepts
                extra = socket.socket()
                extra.setblocking(False)
                extra.connect_ex(("127.0.0.1", port))
                waiting.append(extra)
            threading.Event().wait(0.2)
            with pytest.raises(upstream.Timeout):
                post(f"http://127.0.0.1:{port}/v1/chat/completions")
        finally:
            for extra in waiting:
                extra.close()


@pytest.mark.skipif(bool(os.environ.get("AURA_TESTS_UNDER_GEVENT")), reason="this run is the one it starts")
def test_every_test_here_holds_under_gevent_too():
    """The web workers run under gevent, where each connection keeps one timer for its timeout instead
    of the socket keeping it (a timeout object per wait): this module again, in a gevent process."""
    script = "from gevent import monkey; monkey.patch_all(); import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", script, "-q", "-p", "no:cacheprovider", __file__],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "AURA_TESTS_UNDER_GEVENT": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
