"""No prompt, answer or key text reaches a log line, at DEBUG level, on any path."""

import logging

import pytest
import requests

PROMPT_CANARY = "CANARY-prompt-5f1e0d"
ANSWER_CANARY = "CANARY-answer-9a8b7c"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def calls(live_server, key):
    url = live_server.url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}
    bodies = [
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{PROMPT_CANARY} ECHO:{ANSWER_CANARY}"}]},
        {"model": "claude-sonnet-4-5", "stream": True, "messages": [{"role": "user", "content": f"{PROMPT_CANARY} ECHO:{ANSWER_CANARY}"}]},
        {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": f"FAIL_ECHO {PROMPT_CANARY}"}]},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"FAIL_500 {PROMPT_CANARY}"}]},
        {"model": "no-such-model", "messages": [{"role": "user", "content": PROMPT_CANARY}]},
    ]
    for body in bodies:
        requests.post(url, json=body, headers=headers, timeout=20).content  # noqa: B018
    requests.post(url, data='{"model": "gpt-4o-mini", "messages": [' + PROMPT_CANARY, headers=headers, timeout=20)
    requests.post(
        live_server.url + "/v1/embeddings", json={"model": "text-embedding-3-small", "input": PROMPT_CANARY}, headers=headers, timeout=20
    )


def test_nothing_sensitive_is_logged(logs, live_server, alice_key, upstream):
    calls(live_server, alice_key)
    text = logs.text + "".join(str(r.__dict__) for r in logs.records)
    for secret in (PROMPT_CANARY, ANSWER_CANARY, alice_key, "sk-openai-secret", "sk-anthropic-secret", "sk-gemini-secret"):
        assert secret not in text


def test_an_internal_error_logs_only_the_class(logs, live_server, alice_key, upstream, monkeypatch):
    from gateway import pipeline

    def explode(*args, **kwargs):
        raise RuntimeError(f"boom while handling {PROMPT_CANARY}")

    monkeypatch.setattr(pipeline, "prompt_tokens", explode)
    response = requests.post(
        live_server.url + "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT_CANARY}]},
        headers={"Authorization": f"Bearer {alice_key}"},
        timeout=20,
    )
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert PROMPT_CANARY not in response.text
    handler = logging.getLogger().handlers[0]
    formatted = [handler.format(r) for r in logs.records if r.name.startswith("gateway")]
    assert any("RuntimeError (message withheld)" in line for line in formatted)
    assert not any(PROMPT_CANARY in line for line in formatted)
