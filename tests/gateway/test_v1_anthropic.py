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


def test_reasoning_effort_thinks_against_a_budget_on_claude_4_5_and_the_thinking_stays_out(sdk, upstream):
    answer = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "ECHO:deux"}], reasoning_effort="low"
    )
    sent = upstream.requests[-1]["json"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and sent["max_tokens"] > 2048
    assert answer.choices[0].message.content == "deux"
    assert answer.usage.completion_tokens > 1  # the thinking is billed as output, as Anthropic counts it
    chunks = list(
        sdk.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "ECHO:deux"}], reasoning_effort="low", stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "deux"


def test_claude_5_thinks_adaptively_at_the_effort_asked(sdk, upstream):
    answer = sdk.chat.completions.create(
        model="claude-opus-5", messages=[{"role": "user", "content": "ECHO:trois"}], reasoning_effort="medium"
    )
    sent = upstream.requests[-1]["json"]
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "medium"}
    assert answer.choices[0].message.content == "trois"


def test_redacted_thinking_stays_out_of_the_answer(sdk, upstream):
    messages = [{"role": "user", "content": "ECHO:REDACTED_THINKING"}]
    answer = sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages, reasoning_effort="high")
    assert upstream.requests[-1]["json"]["thinking"]["type"] == "enabled"
    assert answer.choices[0].message.content == "REDACTED_THINKING"
    chunks = list(sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages, reasoning_effort="high", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "REDACTED_THINKING"


def test_a_max_tokens_too_small_for_the_thinking_budget_is_a_400_naming_it(sdk, upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], reasoning_effort="minimal", max_tokens=1000
        )
    assert refused.value.body["param"] == "max_tokens" and "1024" in refused.value.body["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"temperature": 0.2}, "temperature"), ({"top_p": 0.5}, "top_p"), ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice")],
)
def test_what_claude_refuses_beside_thinking_is_a_400_naming_it(sdk, upstream, extra, param):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], reasoning_effort="low", **extra
        )
    assert refused.value.body["param"] == param
    assert upstream.requests == []


def test_tool_results_after_a_thinking_turn_go_without_thinking(sdk, upstream):
    """Anthropic wants the turn's signed thinking back beside its tool calls, which AURA does not keep."""
    first = sdk.chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "CALL_TOOL"}], tools=TOOLS, reasoning_effort="low"
    )
    assert upstream.requests[-1]["json"]["thinking"]["type"] == "enabled"
    message = first.choices[0].message
    assert message.content is None and message.tool_calls[0].function.name == "lookup"
    messages = [
        {"role": "user", "content": "CALL_TOOL"},
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "42"},
    ]
    second = sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS, reasoning_effort="low")
    assert second.choices[0].message.content == "Mock reply to 3 messages."
    assert "thinking" not in upstream.requests[-1]["json"]


@pytest.mark.parametrize("model", ["anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash"])
def test_reasoning_effort_to_a_model_the_catalog_does_not_mark_as_reasoning_is_a_400(sdk, upstream, model):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], reasoning_effort="low")
    assert refused.value.body["param"] == "reasoning_effort" and "not supported with this model" in refused.value.body["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_a_reasoning_effort_outside_openais_set_is_a_400(sdk, upstream, model):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], reasoning_effort="extreme")
    assert refused.value.body["param"] == "reasoning_effort"
    assert upstream.requests == []


def test_logprobs_to_claude_is_a_400_naming_it(sdk, upstream):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], logprobs=True)
    assert refused.value.body["param"] == "logprobs"
    assert upstream.requests == []


def test_empty_text_parts_are_left_out(sdk, upstream):
    """OpenAI takes an empty text part; Anthropic refuses an empty text block."""
    empty = {"type": "text", "text": ""}
    messages = [
        {"role": "system", "content": [empty, {"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": [empty, {"type": "text", "text": "one"}]},
        {"role": "assistant", "content": [empty]},
        {"role": "user", "content": [empty]},
        {"role": "user", "content": "ECHO:two"},
    ]
    assert sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages).choices[0].message.content == "two"
    sent = upstream.requests[-1]["json"]
    assert sent["system"] == [{"type": "text", "text": "Be terse."}]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "ECHO:two"}]}]


def test_an_empty_assistant_text_beside_tool_calls_is_left_out(sdk, upstream):
    call = {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "CALL_TOOL"},
        {"role": "assistant", "content": [{"type": "text", "text": ""}], "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "42"},
    ]
    assert sdk.chat.completions.create(model="claude-sonnet-4-5", messages=messages, tools=TOOLS).choices[0].message.content
    assert [block["type"] for block in upstream.requests[-1]["json"]["messages"][1]["content"]] == ["tool_use"]
