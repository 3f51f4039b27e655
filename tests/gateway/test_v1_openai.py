"""The official OpenAI SDK against AURA's live server, with the mock provider upstream."""

import json
import time

import pytest
import requests

from gateway import services
from metrics.models import UsageRecord
from tests.conftest import fixed_upstream


def test_chat_completion(sdk, upstream):
    raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO:hello there"}])
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello there"
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-aura-model"] == "gpt-4o-mini"
    assert raw.headers["x-aura-provider"] == "openai"
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["x-aura-tokens-original"]) == int(raw.headers["x-aura-tokens-sent"]) > 0
    assert float(raw.headers["x-aura-overhead-ms"]) >= 0
    sent = upstream.requests[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-openai-secret-0123456789"
    assert sent["json"]["model"] == "gpt-4o-mini"

    record = UsageRecord.objects.get()
    assert record.request_id == raw.headers["x-request-id"]
    assert record.prompt_tokens == completion.usage.prompt_tokens
    assert record.completion_tokens == completion.usage.completion_tokens
    assert f"{record.cost_usd:.8f}" == raw.headers["x-aura-cost-usd"]
    assert record.status == 200 and not record.stream


def test_cost_follows_the_catalog(sdk):
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    record = UsageRecord.objects.get()
    from gateway.catalog import load

    prices = load().models["gpt-4o-mini"].prices
    expected = (completion.usage.prompt_tokens * prices.input + completion.usage.completion_tokens * prices.output) / 1_000_000
    assert record.cost_usd == round(expected, 8)


def test_parameters_reach_the_provider_unchanged(sdk, upstream):
    sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
            },
        ],
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=50,
        stop=["\n\n"],
        seed=7,
        user="end-user-1",
        response_format={"type": "json_object"},
        n=2,
    )
    sent = upstream.requests[-1]["json"]
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["seed"] == 7 and sent["n"] == 2
    assert sent["messages"][1]["content"][1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert sent["response_format"] == {"type": "json_object"}


def test_streaming_with_usage(sdk):
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "ECHO:one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].usage.completion_tokens == 4
    assert len([c for c in chunks if c.choices]) >= 4  # relayed chunk by chunk, not as one answer
    record = UsageRecord.objects.get()
    assert record.stream and record.status == 200 and record.completion_tokens == 4
    assert not record.tokens_counted


def test_streaming_without_usage_is_still_accounted(sdk, upstream):
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO:a b c"}], stream=True))
    assert all(c.usage is None for c in chunks)
    assert upstream.requests[-1]["json"]["stream_options"] == {"include_usage": True}
    assert UsageRecord.objects.get().completion_tokens == 3


def test_tools_streamed(sdk):
    tools = [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
    ]
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "CALL_TOOL please"}], tools=tools, stream=True
        )
    )
    arguments = "".join(
        tc.function.arguments or "" for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls
    )
    assert json.loads(arguments) == {"q": "mock"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tools_and_tool_results(sdk):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    first = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=tools, tool_choice="auto"
    )
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    second = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "CALL_TOOL"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "42"},
            {"role": "user", "content": "ECHO:done"},
        ],
        tools=tools,
    )
    assert second.choices[0].message.content == "done"


def test_a_conversation_from_gemini_3_goes_on_with_openai_under_ids_it_takes(sdk, upstream):
    """Gemini 3's signed tool call ids are longer than OpenAI's 40 characters: cut alike in the call and its result."""
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    first = sdk.chat.completions.create(model="gemini-3.1-pro-preview", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert len(call.id) > 40 and "_sig_" in call.id
    messages = [
        {"role": "user", "content": "CALL_TOOL"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "42"},
        {"role": "user", "content": "ECHO:done"},
    ]
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools).choices[0].message.content == "done"
    sent = upstream.requests[-1]["json"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == sent[2]["tool_call_id"] == call.id.partition("_sig_")[0]


def test_embeddings(sdk):
    result = sdk.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    record = UsageRecord.objects.get()
    assert record.endpoint == "embeddings" and record.prompt_tokens == result.usage.prompt_tokens > 0


def test_models_lists_what_the_account_can_use(sdk):
    models = {m.id: m for m in sdk.models.list()}
    assert "gpt-4o-mini" in models and "claude-sonnet-4-5" in models
    assert not any(m.owned_by == "mistral" for m in models.values())
    entry = models["gpt-4o-mini"].model_dump()
    assert set(entry["pricing"]) == {"input", "cached_input", "cache_write", "output"}
    assert entry["capabilities"]["chat"] is True and entry["context_window"] > 0
    assert sdk.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


def test_models_answer_for_every_name_chat_accepts_and_only_the_keys_allowed_ones(sdk, alice, live_server):
    import openai

    from gateway import services

    assert sdk.models.retrieve("anthropic/claude-sonnet-4-5").model_dump()["context_window"] > 0  # as chat names it
    assert sdk.models.retrieve("openai/some-new-model").id == "openai/some-new-model"  # unlisted, forwarded by chat too
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("mistral/mistral-small-latest")  # no Mistral key: chat would refuse it
    key, secret = services.api_key_issue(user=alice, name="limited")
    services.api_key_configure(key=key, allowed_models=["gpt-4o-mini"])
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=20)
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini"]
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")  # chat refuses it for this key: so does the model's page


def test_a_provider_prefix_names_the_provider(sdk, upstream):
    completion = sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "ECHO:x"}])
    assert completion.choices[0].message.content == "x"
    assert upstream.requests[-1]["json"]["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    "stream",
    [
        b'data: {"a": 1}\n\ndata: [DONE]\n\n',
        b'event: x\ndata:{"b": 2}\n\n: a comment\n\ndata: {"c":\ndata: 3}\n\n',  # no space, comments, two data lines
        b'data: {"d": 4}\r\n\r\nretry: 10\r\ndata: {"e": 5}',  # CRLF, other fields, no final blank line
        b"\n\n\n",
    ],
)
def test_the_relays_event_reader_reads_what_the_generic_one_reads(stream):
    from gateway.adapters.base import iter_sse, iter_sse_data

    lines = [line.rstrip(b"\r") for line in stream.split(b"\n")]
    assert [data.decode() for data in iter_sse_data(iter(lines))] == [data for _event, data in iter_sse(iter(lines))]


def test_an_event_spanning_lines_is_relayed_as_one_event():
    from gateway.adapters.base import sse

    assert sse(b'{"a":\n1}') == b'data: {"a":\ndata: 1}\n\n'
    assert sse('{"b": 2}') == b'data: {"b": 2}\n\n'


ANSWER = (
    '{"id":"chatcmpl-raw","object":"chat.completion","created":1764300000,"model":"my-model",'
    '"choices":[{"index":0,"message":{"role":"assistant","content":"Grüße — ✓"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13},"x_server_extra":{"kv_cache":[1,2]}}'
).encode()


@pytest.fixture
def raw_upstream():
    """An OpenAI-compatible server (say vLLM) whose answer is compact, unescaped UTF-8, with a field of its own."""
    with fixed_upstream("application/json", ANSWER) as url:
        yield url


def test_an_openai_compatible_answer_reaches_the_client_byte_for_byte(live_server, alice, raw_upstream):
    services.provider_key_save(user=alice, provider="custom", api_key="sk-raw-0123456789", base_url=raw_upstream, label="raw")
    _key, secret = services.api_key_issue(user=alice, name="raw")
    body = {"model": "raw/my-model", "messages": [{"role": "user", "content": "hi"}]}
    answer = requests.post(live_server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=20)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.content == ANSWER  # not parsed and serialised again: nothing escaped, reordered or dropped
    assert answer.headers["x-aura-provider"] == "custom" and answer.headers["x-request-id"].startswith("req_")
    deadline = time.time() + 5
    while not UsageRecord.objects.exists() and time.time() < deadline:
        time.sleep(0.05)
    record = UsageRecord.objects.get()
    assert (record.prompt_tokens, record.completion_tokens, record.status) == (9, 4, 200)


def test_auto_has_a_models_page_as_chat_accepts_it(sdk, alice):
    import openai

    from gateway import services

    for name in ("auto", "aura/auto"):
        entry = sdk.models.retrieve(name).model_dump()
        assert entry["id"] == name and entry["owned_by"] == "aura" and entry["pricing"] is None
        assert entry["capabilities"]["chat"] and entry["capabilities"]["tools"] and entry["context_window"] >= 200_000
    key, secret = services.api_key_issue(user=alice, name="embeddings only")
    services.api_key_configure(key=key, allowed_models=["text-embedding-3-small"])
    client = openai.OpenAI(base_url=sdk.base_url, api_key=secret, max_retries=0, timeout=20)
    with pytest.raises(openai.NotFoundError):  # nothing for auto to route a chat to
        client.models.retrieve("auto")
