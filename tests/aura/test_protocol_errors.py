"""Requests gunicorn itself refuses (it cannot parse them) get OpenAI's error shape, and neither the
answer nor gunicorn's logs repeat a key the request carried."""

import json
import socket
import time
from urllib.parse import urlsplit

import requests

from tests.conftest import web_server

KEY = "aura_" + "k3yTHATmustNEVERbeLOGGED" * 2
PROVIDER_KEY = "sk-proj-" + "PROVIDERkeyNOTforLOGS" * 2


def raw(url: str, request: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are; return the status, headers and body of the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_unparseable_requests_get_openai_errors_and_keys_stay_out_of_the_logs(transactional_db, tmp_path):
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    procfile = (
        "--worker-class",
        "aura.gunicorn_worker.GeventWorker",
        "--workers",
        "1",
        "--logger-class",
        "aura.gunicorn_logging.AccessLogger",
    )
    with web_server(*procfile, "--access-logfile", str(access), "--error-logfile", str(errors)) as url:
        cases = {
            # A header line with no colon: gunicorn's message would quote it whole, key and all.
            "no colon": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization Bearer " + KEY.encode() + b"\r\n\r\n", 400),
            "NUL in a header": (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Trace: a\x00b\r\n\r\n", 400),
            "long request line": (b"GET /v1/models?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            "bad version": (b"GET /v1/models?api_key=" + PROVIDER_KEY.encode() + b" HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400),
            "too many headers": (b"GET /v1/models HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(150)) + b"\r\n", 431),
        }
        for name, (request, status) in cases.items():
            got, headers, body = raw(url, request)
            assert got == status, name
            assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == str(len(body)), name
            error = json.loads(body)["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error", name
            assert error["message"] and error["code"], name
            assert KEY.encode() not in body and PROVIDER_KEY.encode() not in body, name
        assert json.loads(raw(url, cases["long request line"][0])[2])["error"]["code"] == "request_line_too_long"
        # A parseable request with a provider key in its query string: answered, logged without the key.
        answered = requests.get(f"{url}/v1/models?api_key={PROVIDER_KEY}", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert answered.status_code == 401
        time.sleep(0.5)
    logged = errors.read_text()
    assert logged.count("Invalid request from ip=127.0.0.1") >= len(cases)  # still logged, for whoever runs the server
    assert "[redacted]" in logged
    accessed = access.read_text()
    assert 'GET /v1/models?[redacted] HTTP/1.1" 401' in accessed
    for text in (logged, accessed):
        assert KEY not in text and PROVIDER_KEY not in text and "k3yTHATmustNEVER" not in text and "PROVIDERkeyNOT" not in text
