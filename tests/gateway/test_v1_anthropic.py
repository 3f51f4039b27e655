"""OpenAI requests translated to Anthropic's Messages API and back, against the mock over HTTP."""

import json

import openai
import pytest

from metrics.models import UsageRecord

TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "description": "Find", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }
]


def test_chat_is_translated_both_ways(sdk, upstream):
    raw = sdk.chat.completions.with_raw_response.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "ECHO:bonjour"}],
        max_tokens=64,
        temperature=1.5,
        stop="END",
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "bonjour"
    assert completion.choices[0].finish_reason == "stop"
    assert raw.headers["x-aura-provider"] == "anthropic"
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "sk-anthropic-secret-0123456789"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    body = sent["json"]
    assert body["system"] == [{"type": "text", "text": "Be terse."}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "ECHO:bonjour"}]}]
    assert body["max_tokens"] == 64 and body["temperature"] == 1.0 and body["stop_sequences"] == ["END"]


def test_images_become_image_blocks(sdk, upstream):
    sdk.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
                ],
            }
        ],
    )
    block = upstream.requests[-1]["json"]["messages"][0]["content"][1]
    assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}}


def test_tool_calls_and_results_round_trip(sdk, upstream):
    first = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS, tool_choice="required"
    )
    assert upstream.requests[-1]["json"]["tool_choice"] == {"type": "any"}
    assert upstream.requests[-1]["json"]["tools"][0]["input_schema"]["properties"] == {"q": {"type": "string"}}
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert json.loads(message.tool_calls[0].function.arguments) == {"q": "mock"}
    sdk.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[
            {"role": "user", "content": "CALL_TOOL"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "42"},
        ],
        tools=TOOLS,
    )
    turns = upstream.requests[-1]["json"]["messages"]
    assert turns[1]["content"][-1]["type"] == "tool_use"
    assert turns[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message.tool_calls[0].id, "content": "42"}]}


def test_streaming_is_translated_to_openai_chunks(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model="claude-sonnet-4-5",
            messages=[{"role": "user", "content": "ECHO:un deux trois"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "un deux trois"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 3
    assert UsageRecord.objects.get().completion_tokens == 3


def test_streamed_tool_calls_reassemble(sdk):
    chunks = list(
        sdk.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert calls[0].function.name == "lookup" and calls[0].id
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"q": "mock"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_cache_reads_and_writes_are_counted_and_priced(sdk):
    from gateway.catalog import load

    long_system = "You are a careful assistant. " * 400
    messages = [
        {"role": "system", "content": [{"type": "text", "text": long_system, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "ECHO:ok"},
    ]
    first = sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    second = sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages)
    written, read = UsageRecord.objects.order_by("created", "id")
    assert written.cache_write_tokens > 0 and written.cached_tokens == 0
    assert read.cached_tokens == written.cache_write_tokens and read.cache_write_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == read.cached_tokens
    assert first.usage.prompt_tokens == second.usage.prompt_tokens
    prices = load().models["claude-sonnet-4-5"].prices
    uncached = read.prompt_tokens - read.cached_tokens
    expected = (uncached * prices.input + read.cached_tokens * prices.cached_input + read.completion_tokens * prices.output) / 1_000_000
    assert read.cost_usd == round(expected, 8)
    assert read.cost_usd < written.cost_usd


def test_n_above_one_is_refused_clearly(sdk):
    import openai
    import pytest

    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], n=2)
    assert error.value.body["param"] == "n"
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_a_system_prompt_alone_is_refused_saying_why(sdk, upstream, model):
    import openai

    with pytest.raises(openai.BadRequestError) as error:
        sdk.chat.completions.create(model=model, messages=[{"role": "system", "content": "You are terse."}])
    assert error.value.body["param"] == "messages" and "at least one user message" in error.value.body["message"]
    assert upstream.requests == []  # refused before the call: nothing to pay, nothing to wait for


def test_temperature_wins_over_top_p_which_claude_refuses_beside_it(sdk, upstream):
    answer = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], temperature=0.5, top_p=0.9
    )
    assert answer.choices[0].message.content == "Mock reply to 1 messages."
    sent = upstream.requests[-1]["json"]
    assert sent["temperature"] == 0.5 and "top_p" not in sent
    sdk.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], top_p=0.9)
    assert upstream.requests[-1]["json"]["top_p"] == 0.9


def test_a_streamed_tool_call_without_arguments_ends_with_an_empty_object(sdk):
    """As the unstreamed answer gives it: "{}", never "", which no JSON parser takes."""
    chunks = list(
        sdk.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "CALL_TOOL_NO_ARGS"}], tools=TOOLS, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert "".join(tc.function.arguments or "" for tc in calls) == "{}"
    unstreamed = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "CALL_TOOL_NO_ARGS"}], tools=TOOLS
    )
    assert unstreamed.choices[0].message.tool_calls[0].function.arguments == "{}"


def test_a_prompt_over_the_context_window_is_context_length_exceeded(sdk):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "FAIL_CONTEXT"}])
    error = refused.value.body
    assert (error["code"], error["param"], error["type"]) == ("context_length_exceeded", "messages", "invalid_request_error")
    assert "context window" in error["message"] and "too long" not in error["message"]


@pytest.mark.parametrize(
    ("reason", "finish_reason"),
    [("model_context_window_exceeded", "length"), ("pause_turn", "stop"), ("refusal", "content_filter"), ("stop_sequence", "stop")],
)
def test_every_documented_stop_reason_has_its_openai_finish_reason(sdk, reason, finish_reason):
    messages = [{"role": "user", "content": f"FINISH_REASON:{reason}"}]
    assert sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages).choices[0].finish_reason == finish_reason
    chunks = list(sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish_reason


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
@pytest.mark.parametrize("content", ["", None])
def test_an_empty_assistant_message_in_history_is_left_out(sdk, upstream, model, content):
    """OpenAI takes an assistant turn with nothing in it; Anthropic and Gemini refuse an empty turn."""
    messages = [{"role": "user", "content": "one"}, {"role": "assistant", "content": content}, {"role": "user", "content": "two"}]
    answer = sdk.chat.completions.create(model=model, messages=messages)
    assert answer.choices[0].message.content == "Mock reply to 1 messages."
