"""Every error the /v1 surface can give is in OpenAI's shape, with the status OpenAI would use."""

import gzip
import json
import zlib

import openai
import pytest
import requests

from metrics.models import UsageRecord


def shape(response):
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return body["error"]


@pytest.fixture
def post(live_server, alice_key):
    def send(body, key=alice_key, raw=None, headers=None, path="/v1/chat/completions"):
        data = raw if raw is not None else json.dumps(body)
        return requests.post(
            live_server.url + path,
            data=data,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})},
            timeout=20,
        )

    return send


HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_a_bad_key_is_401(post):
    response = post(HELLO, key="aura_not-a-real-key")
    assert response.status_code == 401
    assert shape(response)["code"] == "invalid_api_key"


def test_no_key_is_401(live_server, db):
    response = requests.post(live_server.url + "/v1/chat/completions", json=HELLO, timeout=10)
    assert response.status_code == 401 and shape(response)["type"] == "invalid_request_error"


def test_malformed_json_is_400(post):
    response = post(None, raw="{not json")
    assert response.status_code == 400
    assert "could not parse the JSON body" in shape(response)["message"]


def test_a_json_array_body_is_400(post):
    assert post(None, raw="[1, 2]").status_code == 400


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0]"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({**HELLO, "temperature": 3}, "temperature"),
        ({**HELLO, "n": 0}, "n"),
        ({**HELLO, "max_tokens": "lots"}, "max_tokens"),
        ({**HELLO, "stream": "yes"}, "stream"),
        ({**HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**HELLO, "tools": [{"type": "function"}]}, "tools"),
        ({**HELLO, "response_format": {"type": "yaml"}}, "response_format"),
        # Found by the schemathesis fuzzing (tests/security): each was a 500 before.
        ({"model": "gpt-4o-mini", "messages": [{"role": ["user"], "content": "hi"}]}, "messages[0]"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "messages[0].content",
        ),
        ({"model": "gpt-4o-mini", "messages": [{"role": "assistant", "tool_calls": [{"id": 1}]}]}, "messages[0].tool_calls"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "tool", "tool_call_id": 7, "content": "x"}]}, "messages[0].tool_call_id"),
        ({**HELLO, "tool_choice": "sometimes"}, "tool_choice"),
        ({**HELLO, "stream_options": "usage"}, "stream_options"),
        ({**HELLO, "stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({**HELLO, "response_format": {"type": "json_schema", "json_schema": "x"}}, "response_format"),
    ],
)
def test_invalid_fields_are_400_naming_the_param(post, body, param):
    response = post(body)
    assert response.status_code == 400
    assert shape(response)["param"] == param


def test_an_unknown_model_is_404(post):
    response = post({**HELLO, "model": "gpt-9-imaginary"})
    assert response.status_code == 404
    assert shape(response)["code"] == "model_not_found"


def test_a_model_without_a_provider_key_says_which_to_add(post):
    response = post({**HELLO, "model": "mistral-small-latest"})
    assert response.status_code == 400
    error = shape(response)
    assert error["code"] == "provider_key_missing" and "No Mistral key" in error["message"]


EMBED = {"model": "text-embedding-3-small", "input": "hello"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**EMBED, "input": ""}, "input"),
        ({**EMBED, "input": ["a", ""]}, "input"),
        ({**EMBED, "input": ["x"] * 2049}, "input"),
        ({**EMBED, "dimensions": -1}, "dimensions"),
        ({**EMBED, "dimensions": 1_000_000_000}, "dimensions"),
        ({**EMBED, "dimensions": "8"}, "dimensions"),
        ({**EMBED, "encoding_format": "hex"}, "encoding_format"),
        ({**EMBED, "user": 5}, "user"),
    ],
)
def test_invalid_embeddings_fields_are_400_naming_the_param(post, upstream, body, param):
    response = post(body, path="/v1/embeddings")
    assert response.status_code == 400 and shape(response)["param"] == param
    assert upstream.requests == []  # refused before anything went upstream


def test_dimensions_beyond_the_models_are_the_providers_400(post, upstream):
    response = post({**EMBED, "dimensions": 4096}, path="/v1/embeddings")
    # (AURA never echoes a provider's message; it names the provider's error code.)
    assert response.status_code == 400 and "invalid_value" in shape(response)["message"]


def test_a_prompt_beyond_an_openai_models_context_window_is_refused_before_the_call(post, upstream):
    response = post({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "word " * 140_000}]})
    error = shape(response)
    assert response.status_code == 400 and error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert "128,000 tokens" in error["message"]
    assert upstream.requests == [] and not UsageRecord.objects.exists()  # nothing went out, nothing to pay


def test_a_chat_model_cannot_embed(post):
    response = post({"model": "gpt-4o-mini", "input": "x"}, path="/v1/embeddings")
    assert response.status_code == 400 and shape(response)["code"] == "model_not_supported"


def test_an_oversized_body_is_413_before_it_is_read(post, settings):
    settings.AURA_MAX_BODY_BYTES = 4096
    response = post({**HELLO, "messages": [{"role": "user", "content": "x" * 10_000}]})
    assert response.status_code == 413
    assert shape(response)["code"] == "request_too_large"


def test_upstream_429_passes_retry_after(post, upstream):
    upstream.fail_next(429, headers={"Retry-After": "7"})
    response = post(HELLO)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert shape(response)["code"] == "rate_limit_exceeded"
    record = UsageRecord.objects.get()
    assert record.status == 429 and record.error_class == "rate_limit_exceeded"


def test_upstream_5xx_is_502_after_one_retry(post, upstream):
    upstream.fail_next(503, count=2)
    response = post(HELLO)
    assert response.status_code == 502 and shape(response)["type"] == "upstream_error"
    retried, final = UsageRecord.objects.order_by("id")
    assert retried.request_id == response.headers["x-request-id"] + "-1" and final.request_id == response.headers["x-request-id"]
    assert retried.status == final.status == 502


def test_a_single_5xx_is_retried_once(post, upstream):
    upstream.fail_next(503)
    assert post(HELLO).status_code == 200
    assert UsageRecord.objects.count() == 2


def test_upstream_timeout_is_504(post, settings):
    settings.AURA_UPSTREAM_READ_TIMEOUT = 0.5
    response = post({**HELLO, "messages": [{"role": "user", "content": "FAIL_TIMEOUT"}]})
    assert response.status_code == 504
    assert shape(response)["code"] == "upstream_timeout"
    assert UsageRecord.objects.get().error_class == "upstream_timeout"


def test_an_unreachable_provider_is_502(post, alice):
    from gateway.models import ProviderKey
    from gateway.services import provider_key_save

    key = ProviderKey.objects.get(user=alice, provider="openai")
    provider_key_save(user=alice, provider="openai", api_key="sk-openai-secret-0123456789", base_url="http://127.0.0.1:9/v1", instance=key)
    response = post(HELLO)
    assert response.status_code == 502 and shape(response)["code"] == "upstream_unreachable"


def test_a_rejected_provider_key_says_to_replace_it(post, upstream):
    upstream.fail_next(401)
    response = post(HELLO)
    assert response.status_code == 400
    assert shape(response)["code"] == "provider_key_rejected"


def test_an_upstream_error_message_is_never_echoed(post):
    canary = "CANARY-upstream-echo-7731"
    response = post({**HELLO, "messages": [{"role": "user", "content": f"FAIL_ECHO {canary}"}]})
    assert response.status_code == 400
    assert canary not in response.text


def test_wrong_method_is_405(live_server, alice_key):
    response = requests.get(live_server.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {alice_key}"}, timeout=10)
    assert response.status_code == 405 and shape(response)["code"] == "method_not_allowed"


def test_an_unknown_endpoint_is_404(live_server, db):
    response = requests.get(live_server.url + "/v1/assistants", timeout=10)
    assert response.status_code == 404 and shape(response)["code"] == "unknown_url"


def test_every_error_carries_a_request_id(post):
    assert post(None, raw="{").headers["x-request-id"].startswith("req_")


def test_the_sdk_raises_its_own_typed_errors(sdk):
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="nope-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])


def test_a_stream_that_breaks_off_ends_with_an_error_event_and_is_accounted(post, upstream, settings):
    upstream.fail_next(500, count=2)
    response = post({**HELLO, "stream": True})
    assert response.status_code == 502
    assert [r.stream for r in UsageRecord.objects.all()] == [True, True]


def test_absurd_nesting_is_a_400_not_a_crash(post):
    response = post(None, raw='{"model": "gpt-4o-mini", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert response.status_code == 400 and shape(response)["type"] == "invalid_request_error"


def test_too_many_messages_or_tools_are_refused(post):
    many = {**HELLO, "messages": [{"role": "user", "content": "x"}] * 5000}
    assert shape(post(many))["param"] == "messages"
    tools = [{"type": "function", "function": {"name": f"f{i}"}} for i in range(600)]
    assert shape(post({**HELLO, "tools": tools}))["param"] == "tools"


def test_compressed_bodies_are_read_and_other_encodings_refused(post, settings):
    plain = json.dumps(HELLO).encode()
    assert post(None, raw=gzip.compress(plain), headers={"Content-Encoding": "gzip"}).status_code == 200
    assert post(None, raw=zlib.compress(plain), headers={"Content-Encoding": "deflate"}).status_code == 200
    refused = post(None, raw=plain, headers={"Content-Encoding": "br"})
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_content_encoding"
    broken = post(None, raw=b"\x1f\x8b not really gzip", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_content_encoding"
    settings.AURA_MAX_BODY_BYTES = 64 * 1024
    bomb = gzip.compress(b"{" + b" " * (10 * 1024 * 1024) + b"}")  # 10 kB that inflate to 10 MB
    assert len(bomb) < 64 * 1024
    assert post(None, raw=bomb, headers={"Content-Encoding": "gzip"}).status_code == 413


def test_bodies_openai_refuses_are_refused_before_the_call_naming_the_param(post, upstream):
    calls = len(upstream.requests)
    cases = [
        ({**HELLO, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**HELLO, "messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        (
            {
                **HELLO,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                    {"role": "tool", "content": "42"},
                ],
            },
            "messages[2].tool_call_id",
        ),
    ]
    for body, param in cases:
        refused = post(body)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param, param
    assert len(upstream.requests) == calls  # nothing reached the provider
    assert post({**HELLO, "stream": True, "stream_options": {"include_usage": True}}).status_code == 200
    assert post({**HELLO, "stream_options": None}).status_code == 200


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_numbers_json_does_not_have_are_400_before_any_call(post, upstream, value):
    raw = json.dumps({**HELLO, "logit_bias": {"50256": 0}}).replace('"50256": 0', f'"50256": {value}')
    response = post(None, raw=raw)
    assert response.status_code == 400 and "could not parse the JSON body" in shape(response)["message"]
    assert not upstream.requests and not UsageRecord.objects.exists()


@pytest.mark.parametrize("model", ["openai/x\r\nSet-Cookie: a=1", "openai/x\u2028y", "openai/x\ty", "m" * 257])
def test_a_model_name_with_line_breaks_or_control_characters_is_400_before_any_call(post, upstream, model):
    response = post({**HELLO, "model": model})
    error = shape(response)
    assert response.status_code == 400 and error["param"] == "model" and "Set-Cookie" not in response.headers
    assert response.headers["x-request-id"]
    assert not upstream.requests and not UsageRecord.objects.exists()
    embedding = post({"model": model, "input": "hi"}, path="/v1/embeddings")
    assert embedding.status_code == 400 and shape(embedding)["param"] == "model"
