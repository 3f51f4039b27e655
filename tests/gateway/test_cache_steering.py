"""Provider prompt caches, steered by AURA: Anthropic breakpoints and OpenAI cache keys."""

import requests

from metrics.models import UsageRecord

LONG = "You answer questions about the AURA gateway precisely. " * 300


def post(live_server, key, body):
    return requests.post(live_server.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def marks(body):
    found = []
    for i, tool in enumerate(body.get("tools", [])):
        if tool.get("cache_control"):
            found.append(("tool", i))
    for i, block in enumerate(body.get("system", [])):
        if block.get("cache_control"):
            found.append(("system", i))
    for i, turn in enumerate(body["messages"]):
        for block in turn["content"]:
            if block.get("cache_control"):
                found.append(("message", i))
    return found


def test_breakpoints_are_placed_on_tools_system_and_history(live_server, alice_key, upstream):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "system", "content": LONG},
        {"role": "user", "content": "ECHO:first"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "ECHO:second"},
    ]
    post(live_server, alice_key, {"model": "claude-sonnet-4-5", "messages": messages, "tools": tools})
    assert marks(upstream.requests[-1]["json"]) == [("tool", 0), ("system", 0), ("message", 1)]
    assert len(marks(upstream.requests[-1]["json"])) <= 4


def test_a_growing_conversation_reads_its_cache_and_the_saving_is_credited(live_server, alice_key, upstream):
    messages = [{"role": "system", "content": LONG}, {"role": "user", "content": "ECHO:one"}]
    post(live_server, alice_key, {"model": "claude-sonnet-4-5", "messages": messages})
    messages += [{"role": "assistant", "content": "one"}, {"role": "user", "content": "ECHO:two"}]
    second = post(live_server, alice_key, {"model": "claude-sonnet-4-5", "messages": messages})
    record = UsageRecord.objects.get(request_id=second.headers["x-request-id"])
    assert record.cached_tokens > 0
    assert record.savings_provider_cache_usd > 0
    assert (
        record.baseline_cost_usd - record.cost_usd
        == record.savings_provider_cache_usd + record.savings_compression_usd + record.savings_routing_usd
    )


def test_short_prompts_get_no_breakpoints(live_server, alice_key, upstream):
    post(
        live_server,
        alice_key,
        {"model": "claude-sonnet-4-5", "messages": [{"role": "system", "content": "Short."}, {"role": "user", "content": "hi"}]},
    )
    assert marks(upstream.requests[-1]["json"]) == []


def test_the_clients_own_breakpoints_are_left_alone(live_server, alice_key, upstream):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "ECHO:x"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "ECHO:y"},
    ]
    post(live_server, alice_key, {"model": "claude-sonnet-4-5", "messages": messages})
    post(live_server, alice_key, {"model": "claude-sonnet-4-5", "messages": messages})
    assert marks(upstream.requests[-1]["json"]) == [("system", 0)]
    # Caching the client set up itself is not AURA's saving.
    assert UsageRecord.objects.order_by("id").last().savings_provider_cache_usd == 0


def test_openai_calls_get_a_stable_prompt_cache_key(live_server, alice_key, upstream):
    convo = [{"role": "system", "content": "S"}, {"role": "user", "content": "ECHO:1"}]
    post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": convo})
    post(
        live_server,
        alice_key,
        {"model": "gpt-4o-mini", "messages": [*convo, {"role": "assistant", "content": "1"}, {"role": "user", "content": "ECHO:2"}]},
    )
    first, second = (r["json"]["prompt_cache_key"] for r in upstream.requests[-2:])
    assert first == second and first.startswith("aura-")
    post(live_server, alice_key, {"model": "gpt-4o-mini", "messages": convo, "prompt_cache_key": "mine"})
    assert upstream.requests[-1]["json"]["prompt_cache_key"] == "mine"


def test_other_openai_compatible_providers_get_no_unknown_parameters(live_server, alice, upstream):
    from .conftest import wire

    key = wire(alice, upstream, providers=("mistral",))
    post(live_server, key, {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}]})
    assert "prompt_cache_key" not in upstream.requests[-1]["json"]
