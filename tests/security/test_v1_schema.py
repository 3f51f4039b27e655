"""/v1 fuzzed against its own OpenAPI document (gateway/openapi.json) on a live server.

Schemathesis generates requests from the document, valid and invalid (its examples,
coverage and fuzzing phases), sends them to a live AURA wired to the mock provider, and
checks every answer: no 5xx, a documented status, content type, body and headers, invalid
input refused with a 4xx. The seed is fixed and the example counts bounded, so a run is
repeatable and takes well under two minutes; a failure prints the request to replay.
"""

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import gateway
from tests.conftest import subscribe, wire

SCHEMA_PATH = Path(gateway.__file__).with_name("openapi.json")
SEED = 20261127

# Models the mock provider answers for, one per wire format, so that generated requests also reach
# the provider and come back as completions and streams rather than only as 404 model_not_found.
CHAT_MODELS = ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "openai/any-model"]
EMBEDDING_MODELS = ["text-embedding-3-small", "gemini-embedding-001"]


def _config(*, phases: list[str], max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Failures print the request in full: the keys are the test's own, and masking would
            # also hide fields named like secrets (max_tokens, x-aura-max-prompt-tokens).
            "output": {"sanitization": {"enabled": False}},
            "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
            "phases": {name: {"enabled": name in phases} for name in ("examples", "coverage", "fuzzing", "stateful")},
            "checks": {
                # A request the document allows can still be a 400 for reasons no schema can carry:
                # no key stored for the model's provider, or the provider itself refusing it.
                "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "429"]},
            },
        }
    )


def _routable(body, models, streams):
    """The generated body, and the same body sent to each known model (and streamed, for chat)."""
    if not (isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"].strip()):
        return st.just(body)
    routed = [{**body, "model": model} for model in models]
    if streams:
        routed += [{**each, "stream": True} for each in routed]
    return st.sampled_from([*routed, body])


def _with_known_models(schema):
    @schema.hook
    def flatmap_body(context, body):
        if context.operation.path == "/v1/embeddings":
            return _routable(body, EMBEDDING_MODELS, streams=False)
        return _routable(body, CHAT_MODELS, streams=True)

    @schema.hook
    def flatmap_path_parameters(context, parameters):
        if not parameters:
            return st.just(parameters)
        return st.sampled_from([{**parameters, "model": "gpt-4o-mini"}, parameters])

    @schema.hook
    def filter_failure(context, failure, case, response):
        # A false positive of schemathesis: it adds an unknown header (which HTTP servers rightly
        # ignore) and then reads a declared integer header's "1" as a second, real negation.
        return not (failure.code == "ST201" and "x-schemathesis-unknown-property" in (case.headers or {}))

    return schema


keyed = _with_known_models(
    schemathesis.openapi.from_path(SCHEMA_PATH, config=_config(phases=["examples", "coverage", "fuzzing"], max_examples=50))
)
unkeyed = schemathesis.openapi.from_path(SCHEMA_PATH, config=_config(phases=["examples", "fuzzing"], max_examples=25)).exclude(
    path="/v1/openapi.json"
)


@pytest.fixture
def key(alice, upstream):
    subscribe(alice, "team")  # the Team plan's 3,000 requests a minute outlast the fuzzing
    return wire(alice, upstream)


# One live server, account and key per operation, shared by all of its examples, as intended.
SHARED_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@keyed.parametrize()
@SHARED_FIXTURES
def test_v1_answers_as_its_schema_says(case, live_server, key):
    case.call_and_validate(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@unkeyed.parametrize()
@SHARED_FIXTURES
def test_a_bad_key_is_a_401_whatever_the_request(case, live_server, db):
    response = case.call(base_url=live_server.url, headers={"Authorization": "Bearer aura_" + "x" * 43}, timeout=30)
    case.validate_response(response)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_schema_is_served_as_committed(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.content == SCHEMA_PATH.read_bytes()
    assert response["Cache-Control"] == "public, max-age=3600"


def test_the_schema_needs_no_key_but_only_get(client):
    response = client.post("/v1/openapi.json")
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"


def test_head_is_answered_where_get_is(live_server, alice_key):
    """The GET's head, its Content-Length included, and no body (RFC 9110)."""
    import requests

    for path, headers in (("/v1/openapi.json", {}), ("/v1/models", {"Authorization": f"Bearer {alice_key}"})):
        got = requests.get(live_server.url + path, headers=headers, timeout=10)
        head = requests.head(live_server.url + path, headers=headers, timeout=10)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["Content-Length"] == got.headers["Content-Length"] == str(len(got.content)), path
        assert head.headers["Content-Type"] == got.headers["Content-Type"], path
