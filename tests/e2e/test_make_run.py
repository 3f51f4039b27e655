"""`make run`'s script (bin/run) as a new user meets it: set up, the demo key works through the
official OpenAI SDK against the mock provider, beat's jobs run, and Ctrl-C stops everything cleanly."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests
from openai import OpenAI

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_gone(group: int, seconds: float = 15) -> bool:
    """Whether every process of ``group`` has ended (the script's trap signals them as it exits)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def fresh_shell(tmp_path, extra: dict) -> dict:
    """A fresh shell's environment for the demo's commands: its data and .env in ``tmp_path``."""
    home = os.environ.get("HOME", str(tmp_path))
    paths = {"AURA_DATA_DIR": str(tmp_path / "var"), "AURA_ENV_FILE": str(tmp_path / ".env")}
    return {**extra, "PATH": os.environ["PATH"], "HOME": home, **paths}


@pytest.fixture
def demo_env(tmp_path):
    """What bin/run is given, beyond a fresh shell's PATH and HOME: the embedded defaults."""
    return {}


def start_run(tmp_path, demo_env: dict) -> tuple[subprocess.Popen, int, int, Path]:
    """bin/run in a session of its own, as from a terminal, with only what a fresh shell has."""
    port, mock_port, log = free_port(), free_port(), tmp_path / "run.log"
    env = {**fresh_shell(tmp_path, demo_env), "AURA_PORT": str(port), "AURA_MOCK_PORT": str(mock_port)}
    with log.open("w") as sink:
        script = subprocess.Popen(
            [str(ROOT / "bin" / "run")],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a terminal's, not pytest's
        )
    return script, port, mock_port, log


@pytest.fixture
def demo(tmp_path, demo_env):
    """bin/run, once it serves and has printed the demo key."""
    if "REDIS_URL" in demo_env:  # a Redis database of the demo's own, empty as on a new machine
        redis.Redis.from_url(demo_env["REDIS_URL"]).flushdb()
    script, port, mock_port, log = start_run(tmp_path, demo_env)
    try:
        deadline = time.monotonic() + 120
        while not (listening(port) and "AURA key:" in log.read_text()) and time.monotonic() < deadline:
            assert script.poll() is None, log.read_text()
            time.sleep(0.3)
        yield script, port, mock_port, log
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGTERM)
            script.wait(timeout=60)
        if "REDIS_URL" in demo_env:  # what the demo's worker and beat left there
            redis.Redis.from_url(demo_env["REDIS_URL"]).flushdb()


def test_the_demo_answers_through_the_openai_sdk_and_stops_cleanly_on_ctrl_c(demo, tmp_path):
    script, port, mock_port, log = demo
    printed = log.read_text()
    assert f"AURA demo is ready: http://127.0.0.1:{port}/" in printed
    assert (tmp_path / ".env").read_text().startswith("# Written by `make run`")
    # The demo runs with DEBUG off: AURA's own pages for a missing page, hashed static files served.
    missing = requests.get(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)
    assert missing.status_code == 404 and "URLconf" not in missing.text and "<title>Not found" in missing.text
    stylesheet = re.search(r'href="(/static/css/aura\.[0-9a-f]+\.css)"', requests.get(f"http://127.0.0.1:{port}/", timeout=10).text)
    assert requests.get(f"http://127.0.0.1:{port}{stylesheet.group(1)}", timeout=10).status_code == 200
    key = re.search(r"AURA key:\s+(\S+)", printed).group(1)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)

    for model, provider in (("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-flash", "gemini")):
        raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Hello"}])
        answer = raw.parse()
        assert answer.choices[0].message.content and answer.usage.prompt_tokens > 0
        assert raw.headers["x-aura-provider"] == provider and float(raw.headers["x-aura-cost-usd"]) > 0
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream"}], stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) and chunks[-1].usage.completion_tokens > 0
    deadline = time.monotonic() + 60  # beat starts beside the web server, in a Python of its own
    while "retention expire-exports removed" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "running 8 scheduled jobs in this process (no broker)" in log.read_text()
    # make run again on the same ports: refused before it changes anything (the running demo's key stays good).
    again = subprocess.run(
        [str(ROOT / "bin" / "run")],
        cwd=ROOT,
        env={**fresh_shell(tmp_path, {}), "AURA_PORT": str(port), "AURA_MOCK_PORT": str(mock_port)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and f"port {port} is in use: is AURA already running?" in again.stderr
    assert "Traceback" not in again.stdout + again.stderr and "AURA key:" not in again.stdout
    assert client.models.list().data  # still the key the first run printed
    stop_with_ctrl_c(script, port, mock_port, log)


def test_ctrl_c_while_it_sets_up_stops_it_without_a_traceback(tmp_path):
    script, _port, _mock_port, log = start_run(tmp_path, {})
    time.sleep(1.5)  # migrating a new database
    os.killpg(script.pid, signal.SIGINT)
    assert script.wait(timeout=60) in (0, 130)
    assert "Traceback" not in log.read_text() and group_gone(script.pid)


def stop_with_ctrl_c(script, port, mock_port, log):
    os.killpg(script.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    assert script.wait(timeout=60) == 0
    output = log.read_text()
    assert "Traceback" not in output and "Shutting down: Master" in output
    assert group_gone(script.pid)  # nothing is left of the script's group: the mock provider and beat are gone too
    assert not listening(port) and not listening(mock_port)  # gunicorn (a session of its own) and the mock provider


BROKER_DB = "redis://127.0.0.1:6379/12"  # of its own: the suite's cache and broker use 15 and 13


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="a broker needs Redis")
@pytest.mark.parametrize("demo_env", [{"REDIS_URL": BROKER_DB}])
def test_with_a_broker_in_env_the_demo_runs_a_celery_worker_with_beat(demo, demo_env, tmp_path):
    """REDIS_URL (from .env or the shell) gives the demo a broker: what the web process queues must
    then be run by a worker, not left in Redis, and beat's schedule by a real beat."""
    script, port, mock_port, log = demo
    key = re.search(r"AURA key:\s+(\S+)", log.read_text()).group(1)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]).usage.total_tokens
    deadline = time.monotonic() + 60
    while not re.search(r"celery@\S+ ready", log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.3)
    printed = log.read_text()
    assert "starting a Celery worker with beat embedded" in printed and "beat: Starting..." in printed
    assert "no broker" not in printed
    # A task the web side would queue, sent to the demo's broker from another process: the worker runs it.
    queue = "from metrics.tasks import drain_usage_spool_task as t; t.delay()"
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "manage.py", "shell", "-c", queue], cwd=ROOT, env=fresh_shell(tmp_path, demo_env), check=True)
    deadline = time.monotonic() + 60
    while "succeeded" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert re.search(r"Task metrics\.drain_usage_spool_task\[[0-9a-f-]+\] succeeded", log.read_text())
    stop_with_ctrl_c(script, port, mock_port, log)
