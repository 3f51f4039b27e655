"""OpenAI requests translated to Gemini's generateContent API and back, against the mock over HTTP."""

import json
import math

import openai
import pytest
from pydantic import BaseModel

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


def tool_turn(call: dict) -> list[dict]:
    """A conversation up to a tool's result: the call (as the assistant made it) and the answer to it."""
    return [
        {"role": "user", "content": "CALL_TOOL"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "42"},
    ]


def test_a_gemini_3_tool_call_carries_its_thought_signature_into_the_next_turn(sdk, upstream):
    """Gemini 3 refuses a replayed function call without the signature it came with: the
    signature rides in the tool call id, and goes back onto the call's part."""
    first = sdk.chat.completions.create(model="gemini-3.1-pro-preview", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS)
    call = first.choices[0].message.tool_calls[0].model_dump()
    second = sdk.chat.completions.create(model="gemini-3.1-pro-preview", messages=tool_turn(call), tools=TOOLS)
    assert second.choices[0].message.content == "Mock reply to 3 messages."
    contents = upstream.requests[-1]["json"]["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] != "skip_thought_signature_validator"
    assert contents[2]["parts"][0]["functionResponse"]["name"] == "lookup"


def test_a_streamed_gemini_3_tool_call_carries_its_thought_signature_too(sdk, upstream):
    with sdk.chat.completions.stream(model="gemini-3.1-pro-preview", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS) as s:
        call = s.get_final_completion().choices[0].message.tool_calls[0].model_dump()
    with sdk.chat.completions.stream(model="gemini-3.1-pro-preview", messages=tool_turn(call), tools=TOOLS) as s:
        assert s.get_final_completion().choices[0].message.content == "Mock reply to 3 messages."
    assert upstream.requests[-1]["json"]["contents"][1]["parts"][0]["thoughtSignature"] != "skip_thought_signature_validator"


def test_a_call_gemini_never_signed_goes_to_gemini_3_with_the_documented_stand_in(sdk, upstream):
    """History from another model (or a Gemini 2.5 call) has no signature to give back."""
    call = {"id": "call_from_elsewhere", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    answer = sdk.chat.completions.create(model="gemini-3.1-pro-preview", messages=tool_turn(call), tools=TOOLS)
    assert answer.choices[0].message.content == "Mock reply to 3 messages."
    assert upstream.requests[-1]["json"]["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


def test_tool_call_ids_stay_short_without_a_signature(sdk, upstream):
    first = sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert len(call.id) == len("call_") + 24
    sdk.chat.completions.create(model="gemini-2.5-flash", messages=tool_turn(call.model_dump()), tools=TOOLS)
    assert "thoughtSignature" not in upstream.requests[-1]["json"]["contents"][1]["parts"][0]


def test_a_blocked_prompt_is_one_empty_choice_stopped_by_the_content_filter(sdk):
    blocked = sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "BLOCK_PROMPT"}])
    assert [(c.message.content, c.finish_reason) for c in blocked.choices] == [("", "content_filter")]
    chunks = list(
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "BLOCK_PROMPT"}], stream=True)
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"


@pytest.mark.parametrize(
    ("reason", "finish_reason"),
    [
        ("SAFETY", "content_filter"),
        ("SPII", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("LANGUAGE", "stop"),
    ],
)
def test_only_filtering_finish_reasons_become_content_filter(sdk, reason, finish_reason):
    answer = sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": f"FINISH_REASON:{reason}"}])
    assert answer.choices[0].finish_reason == finish_reason


class Address(BaseModel):
    strict: str  # property names that are also JSON-schema keywords stay properties
    definitions: str


class Person(BaseModel):
    name: str
    home: Address


class Node(BaseModel):
    children: list["Node"]


def test_pydantic_nested_models_reach_gemini_inlined_and_whole(sdk, upstream):
    reply = '{"name": "Ann", "home": {"strict": "s", "definitions": "d"}}'
    parsed = sdk.beta.chat.completions.parse(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "ECHO:" + reply}], response_format=Person
    )
    assert parsed.choices[0].message.parsed == Person(name="Ann", home=Address(strict="s", definitions="d"))
    schema = upstream.requests[-1]["json"]["generationConfig"]["responseSchema"]
    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
    assert schema["properties"]["home"]["properties"].keys() == {"strict", "definitions"}
    assert set(schema["properties"]["home"]["required"]) == {"strict", "definitions"}
    assert "additionalProperties" not in schema["properties"]["home"]


def test_a_recursive_schema_is_a_400_naming_its_param(sdk, upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.beta.chat.completions.parse(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], response_format=Node)
    assert refused.value.body["param"] == "response_format" and "recursive" in refused.value.body["message"]
    assert upstream.requests == []


def test_tool_parameters_get_the_same_schema_treatment(sdk, upstream):
    tools = [{"type": "function", "function": {"name": "save", "parameters": Person.model_json_schema()}}]
    sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], tools=tools)
    parameters = upstream.requests[-1]["json"]["tools"][0]["functionDeclarations"][0]["parameters"]
    assert parameters["properties"]["home"]["properties"].keys() == {"strict", "definitions"}


def test_shortened_embeddings_come_back_as_unit_vectors(sdk):
    """Gemini normalises only full-size embeddings; OpenAI's are unit vectors at every size."""
    result = sdk.embeddings.create(model="gemini-embedding-001", input=["one", "two"], dimensions=256)
    for item in result.data:
        assert len(item.embedding) == 256 and math.isclose(math.fsum(x * x for x in item.embedding), 1.0, rel_tol=1e-5)


def test_a_prompt_over_the_context_window_is_context_length_exceeded(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "FAIL_CONTEXT"}])
    error = refused.value.body
    assert (error["code"], error["param"], error["type"]) == ("context_length_exceeded", "messages", "invalid_request_error")
    assert "context window" in error["message"] and "token count" not in error["message"]


def test_a_rate_limit_says_when_to_retry_from_geminis_retry_info(sdk, upstream):
    """Gemini puts the delay in the body (RetryInfo) and sends no Retry-After header."""
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38.2s"}
    upstream.fail_next(429, body={"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [retry]}})
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["Retry-After"] == "39"


@pytest.mark.parametrize(("effort", "budget"), [("none", 0), ("low", 1024), ("high", 24576)])
def test_reasoning_effort_sets_gemini_2_5s_thinking_budget(sdk, upstream, effort, budget):
    answer = sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "ECHO:ja"}], reasoning_effort=effort
    )
    assert answer.choices[0].message.content == "ja"
    assert upstream.requests[-1]["json"]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": budget}


def test_gemini_3_thinks_at_the_level_asked(sdk, upstream):
    answer = sdk.chat.completions.create(
        model="gemini-3.1-pro-preview", messages=[{"role": "user", "content": "ECHO:ja"}], reasoning_effort="low"
    )
    assert answer.choices[0].message.content == "ja"
    assert upstream.requests[-1]["json"]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "low"}


def test_gemini_2_5_pro_cannot_turn_thinking_off(sdk, upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}], reasoning_effort="none")
    assert refused.value.body["param"] == "reasoning_effort" and "cannot turn thinking off" in refused.value.body["message"]
    assert upstream.requests == []


def test_logprobs_come_back_in_openais_shape(sdk, upstream):
    answer = sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "ECHO:un deux"}], logprobs=True, top_logprobs=1
    )
    config = upstream.requests[-1]["json"]["generationConfig"]
    assert config["responseLogprobs"] is True and config["logprobs"] == 1
    tokens = answer.choices[0].logprobs.content
    assert [t.token for t in tokens] == ["un", " deux"]
    assert all(t.logprob < 0 and t.bytes == list(t.token.encode()) for t in tokens)
    assert [[top.token for top in t.top_logprobs] for t in tokens] == [["un"], [" deux"]]
    plain = sdk.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "ECHO:un"}], logprobs=True)
    assert plain.choices[0].logprobs.content[0].top_logprobs == []
    assert "logprobs" not in upstream.requests[-1]["json"]["generationConfig"]


def test_presence_and_frequency_penalties_reach_gemini(sdk, upstream):
    sdk.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}], presence_penalty=0.5, frequency_penalty=-0.5
    )
    config = upstream.requests[-1]["json"]["generationConfig"]
    assert config["presencePenalty"] == 0.5 and config["frequencyPenalty"] == -0.5
