"""A web worker told to stop (a deploy, a restart) ends the streams still running, and accounts them,
before the master's kill at the end of --graceful-timeout."""

import json
import signal
import threading
import time

import requests

from gateway import services
from gateway.mock_provider import MockProvider
from metrics.models import UsageRecord
from tests.conftest import web_process


def test_a_stream_still_running_when_the_worker_stops_is_ended_and_accounted(transactional_db, alice):
    slow = MockProvider(chunk_delay_ms=200).start()  # a long answer, a word every 200 ms
    try:
        services.provider_key_save(user=alice, provider="openai", api_key="sk-stop-0123456789", base_url=f"{slow.url}/v1")
        _key, secret = services.api_key_issue(user=alice, name="stop")
        args = ("--worker-class", "aura.gunicorn_worker.GeventWorker", "--workers", "1", "--graceful-timeout", "8")
        with web_process(*args) as (url, master):
            events, started = [], threading.Event()

            def listen():
                body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "ECHO:" + "word " * 400}]}
                with requests.post(
                    url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}, stream=True, timeout=30
                ) as answer:
                    for line in answer.iter_lines():
                        if line.startswith(b"data: "):
                            events.append(line[6:])
                            started.set()

            client = threading.Thread(target=listen)
            client.start()
            assert started.wait(10)
            stopped_at = time.monotonic()
            master.send_signal(signal.SIGTERM)
            client.join(20)
            assert master.wait(20) == 0
            # Ended a few seconds before the master's kill (8 s), with a word to the client.
            assert time.monotonic() - stopped_at < 8
        last = json.loads(events[-1])
        assert last["error"]["code"] == "server_stopping" and b"[DONE]" not in events
        (record,) = UsageRecord.objects.all()
        assert (record.status, record.error_class) == (503, "server_stopping")
        assert record.completion_tokens > 0  # the words that reached the client
    finally:
        slow.stop()
