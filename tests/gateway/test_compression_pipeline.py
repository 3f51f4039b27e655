"""Compression as a caller sees it: the key's level, the per-request header, and the bill."""

import json

import pytest
import requests

from gateway import pipeline, services, tokenizer
from gateway.models import ApiKey
from metrics.models import UsageRecord

PRETTY = json.dumps({"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"], "meta": {"ok": True}} for i in range(40)]}, indent=4)


def post(live_server, key, body, headers=None):
    return requests.post(
        live_server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=20
    )


def tool_turns():
    return [
        {"role": "user", "content": "Look it up"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": PRETTY},
        {"role": "user", "content": "ECHO:summarise"},
    ]


def test_lossless_is_the_default_and_shrinks_pretty_json(live_server, alice_key, upstream):
    response = post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": tool_turns()})
    assert response.headers["x-aura-compression"] == "lossless"
    original, sent = int(response.headers["x-aura-tokens-original"]), int(response.headers["x-aura-tokens-sent"])
    assert sent < original * 0.8
    forwarded = upstream.requests[-1]["json"]["messages"][2]["content"]
    assert json.loads(forwarded) == json.loads(PRETTY) and len(forwarded) < len(PRETTY)
    record = UsageRecord.objects.get()
    assert record.tokens_original == original and record.tokens_sent == sent
    assert record.savings_compression_usd > 0


def fresh_count(body, encoding):
    tokenizer.forget_counts()
    return pipeline.count_prompt(body, encoding)


@pytest.mark.parametrize("model, encoding", [("gpt-4o-mini", "o200k_base"), ("gpt-6-luna", "cl100k_base")])
def test_the_token_headers_are_exact_counts_of_what_was_received_and_sent(live_server, alice_key, upstream, model, encoding):
    notes = "Some  notes   with trailing spaces   \r\n\r\n\r\n\r\nand  blank lines.  "
    messages = [
        {"role": "system", "content": "Be  brief.   \n\n\n\nThanks  "},
        {"role": "user", "content": [{"type": "text", "text": PRETTY}, {"type": "text", "text": notes}]},
        {"role": "assistant", "content": "Noted."},
        *tool_turns(),
    ]
    tools = [{"type": "function", "function": {"name": "f", "description": "Looks  things up.", "parameters": {"type": "object"}}}]
    body = {"model": model, "messages": messages, "tools": tools}
    for _ in range(2):  # the second call finds the counts of the first remembered
        response = post(live_server, alice_key, body)
        original, sent = int(response.headers["x-aura-tokens-original"]), int(response.headers["x-aura-tokens-sent"])
        assert original == fresh_count(body, encoding)
        assert sent == fresh_count(upstream.requests[-1]["json"], encoding) < original


def test_off_sends_the_request_byte_for_byte(live_server, alice_key, upstream):
    messages = tool_turns()
    response = post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": messages}, {"x-aura-compress": "off"})
    assert response.headers["x-aura-tokens-original"] == response.headers["x-aura-tokens-sent"]
    assert upstream.requests[-1]["json"]["messages"] == messages
    assert UsageRecord.objects.get().savings_compression_usd == 0


def test_the_key_setting_applies(live_server, alice, alice_key, upstream):
    services.api_key_configure(key=ApiKey.objects.get(user=alice), compression="off")
    response = post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": tool_turns()})
    assert response.headers["x-aura-compression"] == "off"


def test_a_bad_level_is_a_400(live_server, alice_key):
    response = post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": tool_turns()}, {"x-aura-compress": "max"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "x-aura-compress"


def test_a_budget_trims_the_middle_of_a_long_history(live_server, alice_key, upstream):
    history = [{"role": "system", "content": "Be kind."}]
    for i in range(40):
        history += [
            {"role": "user", "content": f"Question {i}: " + " ".join(["words"] * 50)},
            {"role": "assistant", "content": " ".join(["answer"] * 50)},
        ]
    history.append({"role": "user", "content": "ECHO:last"})
    response = post(
        live_server,
        alice_key,
        {"model": "gpt-4o-mini", "messages": history},
        {"x-aura-compress": "aggressive", "x-aura-max-prompt-tokens": "1500"},
    )
    assert response.status_code == 200
    sent = upstream.requests[-1]["json"]["messages"]
    assert sent[0] == history[0] and sent[1] == history[1] and sent[-1] == history[-1]
    assert len(sent) < len(history)
    assert int(response.headers["x-aura-tokens-sent"]) <= 1500


def test_earlier_turns_stay_byte_identical_as_a_conversation_grows(live_server, alice_key, upstream):
    turns = tool_turns()
    post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": turns})
    first = upstream.requests[-1]["json"]["messages"]
    post(
        live_server,
        alice_key,
        {"model": "gpt-4o-mini", "messages": [*turns, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "ECHO:more"}]},
    )
    second = upstream.requests[-1]["json"]["messages"]
    assert json.dumps(second[: len(first)]) == json.dumps(first)
