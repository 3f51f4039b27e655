"""AURA's gunicorn response (aura/gunicorn_response.py): gunicorn's bytes, in fewer writes."""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from aura import gunicorn_response
from tests.conftest import web_server

ROOT = Path(__file__).resolve().parents[2]


class CountingSocket(socket.socket):
    """A real socket that counts the writes made on it."""

    writes = 0

    def send(self, data, *args):
        self.writes += 1
        return super().send(data, *args)

    def sendall(self, data, *args):
        self.writes += 1
        return super().sendall(data, *args)


def respond(response_class, request: bytes, status: str, headers: list, body: list[bytes], last: bool = False) -> tuple[bytes, int]:
    """What a response class puts on the wire for one request, and in how many writes (``last``: the
    final piece is written as the body's last, as aura.handlers does for a stream)."""
    server, client = socket.socketpair()
    received = []

    def read():
        while data := client.recv(65536):
            received.append(data)

    reader = threading.Thread(target=read)
    with client:
        client.sendall(request)
        reader.start()
        sock = CountingSocket(fileno=server.detach())
        with sock:
            cfg = Config()
            req = next(iter(RequestParser(cfg, sock, ("127.0.0.1", 4000))))
            resp = response_class(req, sock, cfg)
            resp.start_response(status, headers)
            for n, piece in enumerate(body, 1):
                (resp.write_last if last and n == len(body) else resp.write)(piece)
            resp.close()
            writes = sock.writes
        reader.join(10)
    wire = b"".join(received)
    return re.sub(rb"Date: [^\r]+", b"Date: -", wire), writes


GET = b"GET /x HTTP/1.1\r\nHost: aura\r\n\r\n"
HEAD = b"HEAD /x HTTP/1.1\r\nHost: aura\r\n\r\n"
# request, status, headers, body pieces, (writes here, writes by gunicorn's own class)
CASES = {
    "json": (GET, "200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")], [b'{"ok":true}'], (1, 2)),
    "stream": (GET, "200 OK", [("Content-Type", "text/event-stream")], [b"data: 1\n\n", b"data: 2\n\n"], (3, 4)),
    "error": (GET, "401 Unauthorized", [("Content-Type", "application/json"), ("Content-Length", "2")], [b"{}"], (1, 2)),
    "no content": (GET, "204 No Content", [], [], (1, 1)),
    "head": (HEAD, "200 OK", [("Content-Type", "text/html"), ("Content-Length", "5")], [], (1, 1)),
}


@pytest.mark.parametrize("case", CASES)
def test_the_bytes_are_gunicorn_s_in_fewer_writes(case):
    request, status, headers, body, writes = CASES[case]
    theirs, their_writes = respond(wsgi.Response, request, status, headers, body)
    ours, our_writes = respond(gunicorn_response.Response, request, status, headers, body)
    assert ours == theirs
    assert (our_writes, their_writes) == writes


def test_a_stream_s_last_piece_takes_the_body_s_end_along():
    body = [b"data: 1\n\n", b"data: [DONE]\n\n"]
    theirs, their_writes = respond(wsgi.Response, GET, "200 OK", [("Content-Type", "text/event-stream")], body)
    ours, our_writes = respond(gunicorn_response.Response, GET, "200 OK", [("Content-Type", "text/event-stream")], body, last=True)
    assert ours == theirs and ours.endswith(b"E\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    assert (our_writes, their_writes) == (2, 4)


def test_a_response_larger_than_the_socket_takes_still_arrives_whole():
    body = [bytes(range(256)) * 40_000]  # 10 MB: more than one send() takes
    theirs, _ = respond(wsgi.Response, GET, "200 OK", [("Content-Length", str(len(body[0])))], body)
    ours, _ = respond(gunicorn_response.Response, GET, "200 OK", [("Content-Length", str(len(body[0])))], body)
    assert len(ours) > 10_000_000 and ours == theirs


@pytest.mark.parametrize("spool", ["true", "false"])
def test_every_kind_of_answer_through_gunicorn_on_one_keep_alive_connection(transactional_db, alice_key, spool):
    """JSON, a stream, a HEAD, a static file (gunicorn's sendfile path), one after the other on one connection.

    With the spool (production's way), a stream whose end has arrived holds its last events back to
    send them with it; without, it sends each as it comes (its record is written before the end)."""
    if spool == "true" and not os.environ.get("REDIS_URL"):
        pytest.skip("the spool needs Redis")
    with web_server("--worker-class", "aura.gunicorn_worker.GeventWorker", "--workers", "1", AURA_USAGE_SPOOL=spool) as url:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=20)
        auth = {"Authorization": f"Bearer {alice_key}"}

        conn.request("GET", "/v1/models", headers=auth)
        models = conn.getresponse()
        assert models.status == 200 and json.loads(models.read())["object"] == "list"

        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={**auth, "Content-Type": "application/json"})
        stream = conn.getresponse()
        assert stream.status == 200 and stream.getheader("Transfer-Encoding") == "chunked"
        events = [line for line in stream.read().decode().split("\n\n") if line]
        assert events[-1] == "data: [DONE]" and len(events) > 2
        text = "".join(json.loads(event[6:])["choices"][0]["delta"].get("content") or "" for event in events[:-1])
        assert text  # every content event arrived, in order, whole

        conn.request("HEAD", "/privacy/")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""

        conn.request("GET", "/privacy/")
        page = conn.getresponse().read().decode()
        css = re.search(r'href="(/static/[^"]+\.css)"', page).group(1)
        conn.request("GET", css)
        sheet = conn.getresponse()
        content = sheet.read()
        assert sheet.status == 200 and len(content) == int(sheet.getheader("Content-Length")) > 100

        conn.request("GET", "/v1/models", headers={"Authorization": "Bearer aura_wrong"})
        refused = conn.getresponse()
        assert refused.status == 401 and json.loads(refused.read())["error"]["code"] == "invalid_api_key"
        conn.close()


def test_the_web_processes_use_it_under_gunicorn():
    code = "import gunicorn.http.wsgi as w, aura.wsgi; print(w.Response.__module__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "aura.gunicorn_response", done.stderr[-1000:]
