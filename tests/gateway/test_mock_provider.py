"""The mock provider speaks each provider's wire format well enough for real clients."""

import argparse
import json

import openai
import pytest
import requests

from gateway.cli import COMMANDS
from gateway.mock_provider import MockProvider

ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look something up.", "parameters": {"type": "object"}},
}


@pytest.fixture
def mock():
    provider = MockProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def client(mock):
    return openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0)


def sse_events(response):
    """(event name, parsed data) for each SSE event, however its lines end."""
    events = []
    for block in response.text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            data = fields["data"]
            events.append((fields.get("event"), data if data == "[DONE]" else json.loads(data)))
    return events


def anthropic_call(mock, body):
    return requests.post(mock.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS, timeout=5)


def test_chat_completion_with_the_sdk(client, mock):
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Mock reply to 2 messages."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    sent = mock.requests[-1]
    assert sent["method"] == "POST" and sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer k"
    assert sent["json"]["model"] == "gpt-4o-mini"


def test_echo_n_and_logprobs_with_requests(mock):
    body = {"model": "m", "messages": [{"role": "user", "content": "ECHO: exactly this"}], "n": 2, "logprobs": True}
    response = requests.post(mock.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=5)

    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    data = response.json()
    assert [choice["message"]["content"] for choice in data["choices"]] == ["exactly this", "exactly this"]
    assert [token["token"] for token in data["choices"][0]["logprobs"]["content"]] == ["exactly", " this"]
    assert data["usage"]["completion_tokens"] == 4


def test_chat_stream_with_usage_through_the_sdk(client):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) == 5 and "".join(pieces) == "Mock reply to 1 messages."
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_chat_stream_ends_with_done(mock):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    response = requests.post(mock.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=5)

    assert response.headers["Transfer-Encoding"] == "chunked"
    events = sse_events(response)
    assert events[-1] == (None, "[DONE]")
    assert all(data["object"] == "chat.completion.chunk" for _, data in events[:-1])
    assert "usage" not in events[-2][1]  # no usage chunk unless asked for


def test_tool_call_stream_reassembles_to_valid_json(client):
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "please CALL_TOOL"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    fragments = 0
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] += (delta.function.name or "") if delta.function else ""
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
            fragments += 1

    assert finish == "tool_calls"
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "lookup"
    assert json.loads(calls[0]["arguments"]) == {"q": "mock"}
    assert fragments > 3  # the arguments arrive in several pieces


def test_tool_call_without_streaming(client):
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "CALL_TOOL now"}], tools=[WEATHER_TOOL]
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"q": "mock"}


def test_openai_prefix_caching_reports_cached_tokens(client):
    system = {"role": "system", "content": "lorem ipsum " * 600}
    first = client.chat.completions.create(model="gpt-4o", messages=[system, {"role": "user", "content": "one"}])
    second = client.chat.completions.create(model="gpt-4o", messages=[system, {"role": "user", "content": "two"}])

    assert first.usage.prompt_tokens >= 1024
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024 and cached % 128 == 0 and cached <= second.usage.prompt_tokens


def test_embeddings_through_the_sdk_and_requests(client, mock):
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta", "alpha"])
    vectors = [item.embedding for item in result.data]

    assert [len(vector) for vector in vectors] == [8, 8, 8]
    assert vectors[0] == pytest.approx(vectors[2]) and vectors[0] != pytest.approx(vectors[1])
    assert result.usage.prompt_tokens > 0
    plain = requests.post(
        mock.url + "/v1/embeddings", json={"model": "e", "input": "alpha"}, headers={"Authorization": "Bearer k"}, timeout=5
    ).json()
    assert plain["data"][0]["embedding"] == pytest.approx(vectors[0], abs=1e-6)


def test_models_list(client):
    assert "gpt-4o-mini" in [model.id for model in client.models.list()]


@pytest.mark.parametrize("key", ["invalid", "bad-key"])
def test_bad_openai_keys_are_refused(mock, key):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    response = requests.post(mock.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=5)

    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_anthropic_stream_event_order(mock):
    body = {"model": "claude-x", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    events = sse_events(anthropic_call(mock, body))
    names = [name for name, _ in events]

    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"} and len(names[3:-3]) == 5
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]["usage"]
    assert {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"} <= set(start)
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "Mock reply to 1 messages."
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn" and events[-2][1]["usage"]["output_tokens"] == 5


def test_anthropic_tool_use_stream(mock):
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "stream": True,
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "CALL_TOOL"}],
    }
    events = sse_events(anthropic_call(mock, body))

    assert events[1][1]["content_block"]["type"] == "tool_use" and events[1][1]["content_block"]["name"] == "lookup"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"q": "mock"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_cache_write_then_read(mock):
    system = [{"type": "text", "text": "policy " * 400, "cache_control": {"type": "ephemeral"}}]

    def ask(question):
        body = {"model": "claude-x", "max_tokens": 50, "system": system, "messages": [{"role": "user", "content": question}]}
        response = anthropic_call(mock, body)
        assert response.status_code == 200
        return response.json()["usage"]

    first, second = ask("first question"), ask("second question")

    assert first["cache_creation_input_tokens"] > 0 and first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert 0 < second["input_tokens"] < 20  # only the uncached question is billed as input
    mock.reset()
    assert ask("first question")["cache_read_input_tokens"] == 0


def test_anthropic_requires_a_version_header(mock):
    body = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    response = requests.post(mock.url + "/v1/messages", json=body, headers={"x-api-key": "k"}, timeout=5)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_gemini_refuses_a_key_in_the_url_and_accepts_the_header(mock):
    url = mock.url + "/v1beta/models/gemini-2.0-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}

    refused = requests.post(url, params={"key": "k"}, json=body, timeout=5)
    accepted = requests.post(url, json=body, headers={"x-goog-api-key": "k"}, timeout=5)

    assert refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert accepted.status_code == 200
    data = accepted.json()
    assert data["candidates"][0]["content"]["parts"][0]["text"] == "Mock reply to 1 messages."
    assert data["candidates"][0]["finishReason"] == "STOP"
    usage = data["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]


def test_gemini_sse_stream_and_function_call(mock):
    url = mock.url + "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    headers = {"x-goog-api-key": "k"}
    body = {"contents": [{"role": "user", "parts": [{"text": "ECHO: one two three"}]}]}

    events = sse_events(requests.post(url, params={"alt": "sse"}, json=body, headers=headers, timeout=5))
    text = "".join(data["candidates"][0]["content"]["parts"][0]["text"] for _, data in events)
    assert text == "one two three" and len(events) == 3
    assert events[-1][1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1][1]["usageMetadata"]["candidatesTokenCount"] == 3

    tools = [{"functionDeclarations": [{"name": "lookup"}]}]
    body = {"contents": [{"role": "user", "parts": [{"text": "CALL_TOOL"}]}], "tools": tools}
    generate = mock.url + "/v1beta/models/gemini-2.0-flash:generateContent"
    data = requests.post(generate, json=body, headers=headers, timeout=5).json()
    assert data["candidates"][0]["content"]["parts"][0]["functionCall"] == {"name": "lookup", "args": {"q": "mock"}}


def test_gemini_embeddings(mock):
    headers = {"x-goog-api-key": "k"}
    one = requests.post(
        mock.url + "/v1beta/models/text-embedding-004:embedContent",
        json={"content": {"parts": [{"text": "alpha"}]}},
        headers=headers,
        timeout=5,
    ).json()
    batch = requests.post(
        mock.url + "/v1beta/models/text-embedding-004:batchEmbedContents",
        json={"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": t}]}} for t in ("alpha", "b")]},
        headers=headers,
        timeout=5,
    ).json()

    assert len(one["embedding"]["values"]) == 8
    assert batch["embeddings"][0]["values"] == one["embedding"]["values"]


def test_fail_next_429_carries_retry_after(client, mock):
    mock.fail_next(429)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])

    assert caught.value.response.headers["Retry-After"] == "1"
    assert caught.value.body["type"] == "requests"
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices


def test_fail_next_uses_each_providers_error_shape(mock):
    mock.fail_next(503, count=2)
    anthropic = anthropic_call(mock, {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    gemini = requests.post(mock.url + "/v1beta/models/g:generateContent", json={}, headers={"x-goog-api-key": "k"}, timeout=5)

    assert anthropic.status_code == 503 and anthropic.json()["type"] == "error"
    assert gemini.status_code == 503 and gemini.json()["error"]["status"] == "UNAVAILABLE"


def test_fail_echo_quotes_the_prompt(mock):
    text = "FAIL_ECHO secret prompt words"
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
    response = anthropic_call(mock, body)

    assert response.status_code == 400 and text in response.json()["error"]["message"]


def gemini_call(mock, model, body):
    return requests.post(mock.url + f"/v1beta/models/{model}:generateContent", json=body, headers={"x-goog-api-key": "k"}, timeout=5)


def test_fail_marker_in_gemini_format(mock):
    """Gemini says when to retry in the body (RetryInfo), not in a Retry-After header."""
    response = gemini_call(mock, "g", {"contents": [{"parts": [{"text": "FAIL_429"}]}]})

    assert response.status_code == 429 and "Retry-After" not in response.headers
    error = response.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"} in error["details"]


def test_gemini_3_signs_function_calls_and_wants_the_signature_back(mock):
    tools = [{"functionDeclarations": [{"name": "lookup"}]}]
    asked = {"role": "user", "parts": [{"text": "CALL_TOOL"}]}
    answer = gemini_call(mock, "gemini-3.1-pro-preview", {"contents": [asked], "tools": tools}).json()
    signed = answer["candidates"][0]["content"]["parts"][0]
    unsigned = {"functionCall": signed["functionCall"]}
    result = {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"content": "42"}}}]}

    def replay(part):
        return gemini_call(mock, "gemini-3.1-pro-preview", {"contents": [asked, {"role": "model", "parts": [part]}, result]})

    assert signed["thoughtSignature"]
    assert replay(signed).status_code == 200
    assert replay({**unsigned, "thoughtSignature": "skip_thought_signature_validator"}).status_code == 200
    assert replay(unsigned).status_code == 400
    assert replay({**unsigned, "thoughtSignature": "Zm9yZ2Vk"}).status_code == 400


def test_anthropic_refuses_temperature_with_top_p(mock):
    body = {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 0.5, "top_p": 0.9}

    assert anthropic_call(mock, body).status_code == 400


def test_a_thinking_claude_answers_with_a_thinking_block_first(mock):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    answer = anthropic_call(mock, {**body, "messages": [{"role": "user", "content": "Hi"}]}).json()
    assert [block["type"] for block in answer["content"]] == ["thinking", "text"] and answer["content"][0]["signature"]
    events = sse_events(anthropic_call(mock, {**body, "stream": True, "messages": [{"role": "user", "content": "REDACTED_THINKING"}]}))
    assert events[1][1]["content_block"]["type"] == "redacted_thinking"
    assert [data["index"] for name, data in events if name == "content_block_start"] == [0, 1]


@pytest.mark.parametrize(
    "change",
    [
        {"thinking": {"type": "enabled", "budget_tokens": 512}},
        {"thinking": {"type": "enabled", "budget_tokens": 2000}},
        {"thinking": {"type": "adaptive"}},
        {"model": "claude-opus-5"},
        {"temperature": 0.5},
        {"top_k": 5},
        {"tool_choice": {"type": "any"}},
    ],
)
def test_anthropic_refuses_what_it_refuses_beside_thinking(mock, change):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert anthropic_call(mock, {**body, "messages": [{"role": "user", "content": "Hi"}], **change}).status_code == 400


def test_anthropic_wants_the_thinking_back_beside_the_tool_calls_it_led_to(mock):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
    thinking = {"type": "thinking", "thinking": "t", "signature": "s"}
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]}

    def after(blocks):
        messages = [{"role": "user", "content": "CALL_TOOL"}, {"role": "assistant", "content": blocks}, result]
        return anthropic_call(mock, {**body, "messages": messages}).status_code

    assert after([thinking, tool_use]) == 200
    assert after([tool_use]) == 400


def test_anthropic_refuses_an_empty_text_block(mock):
    messages = [{"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"}]}]
    assert anthropic_call(mock, {"model": "c", "max_tokens": 5, "messages": messages}).status_code == 400


@pytest.mark.parametrize(
    ("model", "config", "status"),
    [
        ("gemini-2.5-flash", {"thinkingConfig": {"thinkingBudget": 0}}, 200),
        ("gemini-2.5-pro", {"thinkingConfig": {"thinkingBudget": 0}}, 400),
        ("gemini-2.5-flash-lite", {"thinkingConfig": {"thinkingBudget": 100}}, 400),
        ("gemini-2.5-flash", {"thinkingConfig": {"thinkingLevel": "low"}}, 400),
        ("gemini-3.1-pro-preview", {"thinkingConfig": {"thinkingLevel": "low"}}, 200),
        ("gemini-3.1-pro-preview", {"thinkingConfig": {"thinkingLevel": "low", "thinkingBudget": 1024}}, 400),
        ("gemini-2.5-flash", {"logprobs": 2}, 400),
        ("gemini-2.5-flash", {"responseLogprobs": True, "logprobs": 21}, 400),
    ],
)
def test_gemini_refuses_a_config_its_model_does_not_take(mock, model, config, status):
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": config}
    assert gemini_call(mock, model, body).status_code == status


def test_gemini_gives_logprobs_when_asked(mock):
    body = {"contents": [{"role": "user", "parts": [{"text": "ECHO:a b"}]}], "generationConfig": {"responseLogprobs": True, "logprobs": 1}}
    result = gemini_call(mock, "gemini-2.5-flash", body).json()["candidates"][0]["logprobsResult"]
    assert [c["token"] for c in result["chosenCandidates"]] == ["a", " b"]
    assert [step["candidates"][0]["token"] for step in result["topCandidates"]] == ["a", " b"]


def test_openai_refuses_a_tool_call_id_over_40_characters_and_an_unanswered_tool_message(client):
    def ask(call_id, result_id):
        call = {"id": call_id, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        messages = [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": result_id, "content": "42"},
        ]
        return client.chat.completions.create(model="gpt-4o", messages=messages)

    assert ask("call_" + "a" * 35, "call_" + "a" * 35).choices[0].message.content
    with pytest.raises(openai.BadRequestError) as refused:
        ask("call_" + "a" * 36, "call_" + "a" * 36)
    assert refused.value.code == "string_above_max_length"
    with pytest.raises(openai.BadRequestError):
        ask("call_1", "call_2")


def test_cli_entry_parses_its_options():
    help_text, add_arguments, handle = COMMANDS["mock-provider"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = vars(parser.parse_args(["--port", "9001", "--fail-rate", "0.5"]))

    assert help_text and callable(handle)
    assert options | {"port": 9001} == {
        "host": "127.0.0.1",
        "port": 9001,
        "latency_ms": 0,
        "chunk_delay_ms": 0,
        "fail_rate": 0.5,
        "seed": 0,
    }
