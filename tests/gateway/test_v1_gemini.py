"""OpenAI requests translated to Gemini's generateContent API and back, against the mock over HTTP."""

import json

import openai
import pytest

from metrics.models import UsageRecord

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": False},
        },
    }
]


def test_chat_is_translated_both_ways_with_the_key_in_a_header(sdk, upstream):
    raw = sdk.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "ECHO:hallo"}],
        max_tokens=32,
        response_format={"type": "json_object"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "hallo"
    assert raw.headers["x-aura-provider"] == "gemini"
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert "key" not in sent["query"] and "secret" not in sent["path"] + str(sent["query"])
    assert sent["headers"]["x-goog-api-key"] == "sk-gemini-secret-0123456789"
    body = sent["json"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "ECHO:hallo"}]}]
    assert body["generationConfig"] == {"maxOutputTokens": 32, "responseMimeType": "application/json"}
    assert UsageRecord.objects.get().prompt_tokens == completion.usage.prompt_tokens > 0


def test_tools_become_function_declarations(sdk, upstream):
    first = sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS)
    declaration = upstream.requests[-1]["json"]["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "lookup" and "additionalProperties" not in declaration["parameters"]
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"q": "mock"}
    sdk.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "user", "content": "CALL_TOOL"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "42"},
        ],
        tools=TOOLS,
    )
    contents = upstream.requests[-1]["json"]["contents"]
    assert contents[1]["parts"][-1] == {"functionCall": {"name": "lookup", "args": {"q": "mock"}}}
    assert contents[2]["parts"] == [{"functionResponse": {"name": "lookup", "response": {"content": "42"}}}]


def test_streaming_is_translated(sdk, upstream):
    chunks = list(
        sdk.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "ECHO:eins zwei drei"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert upstream.requests[-1]["path"].endswith(":streamGenerateContent")
    assert upstream.requests[-1]["query"].get("alt") in ("sse", ["sse"])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "eins zwei drei"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == UsageRecord.objects.get().completion_tokens == 3


def test_each_streamed_choice_names_its_role(sdk):
    """With n > 1 (Gemini's candidateCount) every choice's first delta carries the role, as OpenAI's do:
    the SDK's stream helper builds each message from them."""
    with sdk.chat.completions.stream(model="gemini-2.5-flash", messages=[{"role": "user", "content": "ECHO:hallo"}], n=2) as stream:
        final = stream.get_final_completion()
    assert [choice.message.role for choice in final.choices] == ["assistant", "assistant"]
    assert [choice.message.content for choice in final.choices] == ["hallo", "hallo"]


def test_streamed_tool_calls(sdk):
    chunks = list(
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS, stream=True)
    )
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert calls[0].function.name == "lookup"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"q": "mock"}


def test_embeddings_are_translated(sdk, upstream):
    result = sdk.embeddings.create(model="gemini-embedding-001", input=["one", "two", "three"], encoding_format="float")
    assert [d.index for d in result.data] == [0, 1, 2] and len(result.data[0].embedding) > 0
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [r["content"]["parts"][0]["text"] for r in sent["json"]["requests"]] == ["one", "two", "three"]
    record = UsageRecord.objects.get()
    assert record.tokens_counted and record.prompt_tokens == result.usage.prompt_tokens == 3


def test_embeddings_in_the_sdks_default_base64(sdk):
    result = sdk.embeddings.create(model="gemini-embedding-001", input="one")
    assert len(result.data[0].embedding) > 0 and all(isinstance(x, float) for x in result.data[0].embedding)


def test_a_gemini_key_rejected_with_400_says_to_replace_it(live_server, alice, upstream):
    import requests

    from gateway.models import ProviderKey
    from gateway.services import api_key_issue, provider_key_save

    from .conftest import wire

    wire(alice, upstream, providers=("gemini",))
    key = ProviderKey.objects.get(user=alice, provider="gemini")
    provider_key_save(user=alice, provider="gemini", api_key="bad-gemini-key-000", base_url=upstream.url, instance=key)
    _k, secret = api_key_issue(user=alice, name="g")
    response = requests.post(
        live_server.url + "/v1/chat/completions",
        json={"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "provider_key_rejected"


def test_images_become_inline_data_or_a_url_gemini_fetches(sdk, upstream):
    """A data URL goes inline; an https URL as fileData, which Gemini fetches itself (public and signed
    URLs, since January 2026), with the type its path names, never a wildcard Gemini would refuse."""
    images = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.jpg?sig=abc"}},
        {"type": "image_url", "image_url": {"url": "https://example.org/render?id=7"}},
    ]
    content = [{"type": "text", "text": "what"}, *images]
    sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": content}])
    parts = upstream.requests[-1]["json"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "QUJD"}}
    assert parts[2] == {"fileData": {"fileUri": "https://example.org/cat.jpg?sig=abc", "mimeType": "image/jpeg"}}
    assert parts[3] == {"fileData": {"fileUri": "https://example.org/render?id=7"}}


def test_a_schema_nested_past_reason_is_a_400_naming_its_param(sdk, upstream):
    deep = {"type": "string"}
    for _ in range(300):
        deep = {"type": "object", "properties": {"a": deep}}
    messages = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": deep}}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=messages, tools=tools)
    assert refused.value.body["param"] == "tools" and "nested more than 64 levels" in refused.value.body["message"]
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": deep}}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=messages, response_format=schema)
    assert refused.value.body["param"] == "response_format"
    shallow = {"type": "object", "properties": {"a": {"type": "string"}}}  # an everyday schema still goes
    sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=messages, tools=[{"type": "function", "function": {"name": "f", "parameters": shallow}}]
    )
