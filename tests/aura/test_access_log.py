"""The web processes' access log: a line per request, but none for a /v1 call that succeeded (its usage record is its log)."""

import time

import requests

from tests.conftest import web_server


def test_successful_v1_calls_leave_no_access_line_and_the_rest_do(transactional_db, alice_key, tmp_path):
    log = tmp_path / "access.log"
    args = ("--workers", "1", "--access-logfile", str(log), "--logger-class", "aura.gunicorn_logging.AccessLogger")
    with web_server(*args) as url:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

        def chat(key):
            return requests.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20)

        answered = chat(alice_key)
        assert answered.status_code == 200
        # A JSON answer goes out whole, with its length: not chunked (one write fewer per call).
        assert answered.headers["Content-Length"] == str(len(answered.content)) and "Transfer-Encoding" not in answered.headers
        refused = chat("aura_wrong")
        assert refused.status_code == 401 and refused.headers["Content-Length"] == str(len(refused.content))
        assert requests.get(url + "/privacy/", timeout=20).status_code == 200
        assert requests.get(url + "/v1/models", headers={"Authorization": f"Bearer {alice_key}"}, timeout=20).ok
        time.sleep(0.5)
    lines = log.read_text().splitlines()
    assert any('"POST /v1/chat/completions HTTP/1.1" 401' in line for line in lines)
    assert any('"GET /privacy/ HTTP/1.1" 200' in line for line in lines)
    assert any('"GET /v1/models HTTP/1.1" 200' in line for line in lines)  # no usage record: its line stays
    assert not any('/v1/chat/completions HTTP/1.1" 200' in line for line in lines)
    assert not any("aura_wrong" in line or alice_key in line for line in lines)


def test_the_one_time_tokens_of_emailed_links_are_not_written(transactional_db, tmp_path):
    log = tmp_path / "access.log"
    args = ("--workers", "1", "--access-logfile", str(log), "--logger-class", "aura.gunicorn_logging.AccessLogger")
    tokens = {
        "/verify/{}/": "eyJ1IjoxLCJlIjoiYUBiLmMifQ:1vPqRs:Zm9vYmFyYmF6cXV4",
        "/reset/Mg/{}/": "cb2f3k-0123456789abcdef0123456789abcdef",
        "/account/restore/{}/": "eyJ1IjoxLCJhdCI6IjIwMjYtMTEtMjkifQ:1vPqRs:cmVzdG9yZXRva2Vu",
        "/alerts/recipient/{}/": "eyJ1IjoxLCJhIjoib3BzQGV4YW1wbGUub3JnIn0:1vPqRs:YWxlcnRzdG9rZW4",
    }
    with web_server(*args) as url:
        for path, token in tokens.items():
            requests.get(url + path.format(token), timeout=20, allow_redirects=False)
        time.sleep(0.5)
    lines = log.read_text().splitlines()
    assert sum('/[redacted]/ HTTP/1.1"' in line for line in lines) == 4
    assert not any(token in line for token in tokens.values() for line in lines)
