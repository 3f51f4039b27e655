"""AURA against a direct upstream and LiteLLM's proxy, side by side, in one run on loopback.

    .venv/bin/python bench/gateway.py [--quick] [--no-litellm] [--keep-logs]

From the repository root. One run starts everything it needs, measures, prints a results table,
writes ``bench/results/gateway-<timestamp>.json`` and stops every process it started (also on
Ctrl-C or failure). It needs PostgreSQL (127.0.0.1:5432, user root, trust auth) and Redis
(127.0.0.1:6379); it creates the database ``aura_bench`` if missing and uses Redis database 14.

What it starts, all on 127.0.0.1:

- two ``bench/fast_upstream.py`` processes, OpenAI's chat API in miniature: a fast one (streamed
  chunks back to back) and a slow one (10 chunks 100 ms apart, for the concurrency test);
- AURA under the Procfile's web command (gunicorn, 2 gevent workers, 1000 connections each) with
  production settings (``DEBUG=false``, PostgreSQL, Redis, a fresh random ``SECRET_KEY`` and vault
  key), seeded with two users through ``manage.py aura``: one whose OpenAI key points at the fast
  upstream and one at the slow one, each with an AURA key;
- LiteLLM's proxy (``bench/.venv-litellm``, installed from ``bench/requirements-litellm.txt`` when
  missing) with no database, ``gpt-4o-mini`` routed to the fast upstream and ``gpt-4o-mini-slow``
  to the slow one, two workers, telemetry and every remote fetch switched off. When it cannot be
  installed or started, it is reported as "not available: <reason>" and the rest still runs.

What it measures, with ``bench/loadgen.py`` in a process of its own (full run; ``--quick`` in brackets):

a. overhead: 2000 (300) sequential non-stream calls on one keep-alive connection after a warm-up;
   p50/p99 latency direct, through AURA and through LiteLLM, the gateways' added latency, and the
   median of AURA's own ``x-aura-overhead-ms`` header;
b. throughput: 50 keep-alive connections for 15 s (5 s): requests/s and errors; AURA/LiteLLM;
c. concurrency: 1000 (200) concurrent streamed calls, one connection each, against the slow
   upstream (each stream lasts at least 0.9 s): completed/s, errors, p50/p99 total time, and each
   rate as a percentage of direct's;
d. memory: the summed RSS of AURA's gunicorn workers before and after 10000 (2000) non-stream
   calls, and whether ``metrics_usagerecord`` gained exactly one row per call.

The CPU seconds each process group used during each measurement are recorded in the JSON file, as
is a summary of warnings and errors from AURA's log. No key is printed or stored.
"""

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_REQUIREMENTS = BENCH / "requirements-litellm.txt"
HOST = "127.0.0.1"
DB_NAME = "aura_bench"
PG = ("-h", "127.0.0.1", "-p", "5432", "-U", "root")
UPSTREAM_KEY = "sk-bench-0123456789"
MODEL = "gpt-4o-mini"
PROMPT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello in one short sentence."}]}
CLK_TCK = os.sysconf("SC_CLK_TCK")

FULL = {"sequential": 2000, "warmup": 200, "throughput_s": 15, "streams": 1000, "memory_calls": 10_000}
QUICK = {"sequential": 300, "warmup": 50, "throughput_s": 5, "streams": 200, "memory_calls": 2000}
CONNECTIONS = 50
CHUNKS = 10
SLOW_CHUNK_DELAY_MS = 100


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


class Unavailable(Exception):
    """A component that cannot be run here; the message says why, in one line."""


# processes ---------------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """Every live process of this service: each one runs in a session of its own."""
        return [pid for pid, stat in _proc_stats() if stat[3] == str(self.pid)]

    def cpu_seconds(self) -> float:
        return sum((int(stat[11]) + int(stat[12])) / CLK_TCK for _pid, stat in _proc_stats() if stat[3] == str(self.pid))


def _proc_stats():
    """(pid, fields from the third on) for each process: fields[1] is the ppid, fields[3] the session."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), raw[raw.rfind(")") + 2 :].split()


class Processes:
    """Everything this run starts, so that everything is stopped, whatever happens."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.services: list[Service] = []

    def start(self, name: str, argv: list[str], *, env: dict | None = None, cwd: Path = ROOT, stdout=None) -> Service:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as sink:
            proc = subprocess.Popen(  # noqa: S603 -- our own argv, no shell
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else sink,
                stderr=sink,
                start_new_session=True,
            )
        service = Service(name, proc, log)
        self.services.append(service)
        return service

    def stop(self, service: Service, grace: float = 10.0) -> None:
        if service.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.pid, signal.SIGTERM)
            try:
                service.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Workers outlive a master that died first: end the whole session.
        for pid in service.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(5)
        if service.proc.stdout:
            service.proc.stdout.close()

    def stop_all(self) -> None:
        for service in reversed(self.services):
            self.stop(service)
        self.services.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_post(port: int, path: str, body: dict, headers: dict | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(service: Service, port: int, path: str, headers: dict | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise Unavailable(f"{service.name} exited with code {service.proc.returncode}: {last_line(service)}")
        try:
            status, _ = http_get(port, path, headers, timeout=5)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as error:
            last = type(error).__name__
        time.sleep(0.5)
    raise Unavailable(f"{service.name} not ready after {timeout:.0f} s ({last}): {last_line(service)}")


def last_line(service: Service) -> str:
    lines = [line.strip() for line in service.tail(40).splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"error|exception|fatal", line, re.IGNORECASE):
            return line[:300]
    return (lines[-1] if lines else "empty log")[:300]


# the upstreams -----------------------------------------------------------------------------------


def start_upstream(procs: Processes, name: str, chunk_delay_ms: float) -> int:
    argv = [sys.executable, str(BENCH / "fast_upstream.py"), "--port", "0", "--chunks", str(CHUNKS)]
    service = procs.start(name, [*argv, "--chunk-delay-ms", str(chunk_delay_ms)], stdout=subprocess.PIPE)
    line = service.proc.stdout.readline().decode().strip()
    match = re.fullmatch(r"listening on [\d.]+:(\d+)", line)
    if not match:
        raise RuntimeError(f"{name} did not start: {line or service.tail()}")
    port = int(match.group(1))
    wait_ready(service, port, "/v1/models", None, 10)
    return port


# AURA --------------------------------------------------------------------------------------------


def aura_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AURA_", "DJANGO_", "DATABASE_", "REDIS_", "CELERY_"))}
    env.update(
        {
            "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "DATABASE_URL": f"postgres://root@127.0.0.1:5432/{DB_NAME}",
            "REDIS_URL": "redis://127.0.0.1:6379/14",
            "SECRET_KEY": secrets.token_urlsafe(45),  # 60 characters
            "AURA_VAULT_KEYS": "1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "AURA_UPSTREAM_ALLOW_PRIVATE": "true",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "AURA_ENV_FILE": "/nonexistent",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict, *args: str, timeout: float = 180) -> str:
    result = subprocess.run(  # noqa: S603 -- our own argv, no shell
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode:
        # The command and its error only: arguments may hold a provider key, output an AURA key.
        raise RuntimeError(f"manage.py {' '.join(args[:2])} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def ensure_database(env: dict) -> None:
    found = subprocess.run(  # noqa: S603
        ["psql", *PG, "-d", "postgres", "-Atc", "SELECT datname FROM pg_database"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    if DB_NAME not in found.stdout.split():
        say(f"creating database {DB_NAME}")
        subprocess.run(["createdb", *PG, DB_NAME], check=True, timeout=60)  # noqa: S603, S607
    say("migrating")
    manage(env, "migrate", "--noinput", "-v0", timeout=300)


def seed_user(env: dict, run_id: str, role: str, upstream_port: int) -> str:
    """A fresh user per run (the vault key is new each run), its OpenAI key and an AURA key."""
    email = f"bench-{role}-{run_id}@bench.aura.local"
    manage(env, "aura", "user-create", "--email", email, "--password", secrets.token_urlsafe(24), "--name", f"Bench {role}")
    base_url = f"http://{HOST}:{upstream_port}/v1"
    manage(env, "aura", "provider-add", "--email", email, "--provider", "openai", "--base-url", base_url, "--api-key", UPSTREAM_KEY)
    key = manage(env, "aura", "key-issue", "--email", email, "--name", f"bench {run_id}").strip()
    if not key.startswith("aura_"):
        raise RuntimeError("key-issue printed something that is not an AURA key")
    return key


def usage_count() -> int:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=5432, user="root", dbname=DB_NAME) as conn:
        return conn.execute("SELECT count(*) FROM metrics_usagerecord").fetchone()[0]


def start_aura(procs: Processes, env: dict, port: int) -> Service:
    # The Procfile's web line, bound to loopback.
    argv = [
        str(VENV_BIN / "gunicorn"),
        "aura.wsgi",
        "--bind",
        f"{HOST}:{port}",
        "--worker-class",
        "gevent",
        "--workers",
        "2",
        "--worker-connections",
        "1000",
        "--timeout",
        "120",
        "--graceful-timeout",
        "30",
        "--access-logfile",
        "-",
    ]
    return procs.start("aura", argv, env=env)


def worker_rss_kb(master: Service) -> dict:
    workers = [pid for pid, stat in _proc_stats() if stat[1] == str(master.pid)]
    rss = {}
    for pid in workers:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1])
    return rss


def log_summary(service: Service, top: int = 8) -> dict:
    """Warning and error lines in a service's log, grouped with ids and numbers blanked."""
    kinds: Counter = Counter()
    try:
        text = service.log.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if re.search(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|\[CRITICAL\]|\[ERROR\]|\[WARNING\]", line):
            shape = re.sub(r"^\S+ \S+ ", "", line)  # the timestamp
            shape = re.sub(r"req_[0-9a-f]+|0x[0-9a-f]+|\d+", "#", shape)
            kinds[shape[:200]] += 1
    return dict(kinds.most_common(top))


# LiteLLM -----------------------------------------------------------------------------------------


def litellm_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_", "DATABASE_", "REDIS_"))}
    nowhere = "http://127.0.0.1:9/disabled"  # the discard port: any fetch we did not think of fails at once, locally
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",  # do not read a .env from the working directory
            "LITELLM_TELEMETRY_DISABLED": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOCAL_BLOG_POSTS": "True",
            "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
            "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
            "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
            "LITELLM_MODEL_COST_MAP_URL": nowhere,
            "LITELLM_BLOG_POSTS_URL": nowhere,
            "LITELLM_ANTHROPIC_BETA_HEADERS_URL": nowhere,
            "LITELLM_AUTOROUTER_PRESETS_URL": nowhere,
            "DISABLE_ADMIN_UI": "True",
            "NO_PROXY": "*",
            "HOME": str(tmp),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    return env


def litellm_config(tmp: Path, fast_port: int, slow_port: int) -> Path:
    lines = ["model_list:"]
    for name, port in ((MODEL, fast_port), (f"{MODEL}-slow", slow_port)):
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            f"      model: openai/{MODEL}",
            f"      api_base: http://{HOST}:{port}/v1",
            "      api_key: sk-bench",
        ]
    lines += ["litellm_settings:", "  telemetry: false", "  request_timeout: 120", ""]
    path = tmp / "litellm.yaml"
    path.write_text("\n".join(lines))
    return path


def ensure_litellm(install: bool) -> Path:
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    if not install:
        raise Unavailable(f"{binary.relative_to(ROOT)} is missing (run without --no-litellm-install to create it)")
    say(f"installing LiteLLM into {LITELLM_VENV.relative_to(ROOT)} from {LITELLM_REQUIREMENTS.name}")
    try:
        python = shutil.which("python3") or sys.executable
        subprocess.run([python, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)  # noqa: S603
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", str(LITELLM_REQUIREMENTS)]
        result = subprocess.run(pip, capture_output=True, text=True, timeout=1200, check=False)  # noqa: S603
    except (OSError, subprocess.SubprocessError) as error:
        raise Unavailable(f"could not create its virtualenv: {type(error).__name__}") from None
    if result.returncode or not binary.exists():
        reason = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise Unavailable(f"pip install failed: {reason[:200]}")
    return binary


def package_version(python: Path, name: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    return result.stdout.strip() or None


def start_litellm(procs: Processes, tmp: Path, fast_port: int, slow_port: int, install: bool) -> tuple[Service, int, str]:
    binary = ensure_litellm(install)
    version = package_version(LITELLM_VENV / "bin" / "python", "litellm") or "unknown"
    port = free_port()
    config = litellm_config(tmp, fast_port, slow_port)
    argv = [str(binary), "--config", str(config), "--host", HOST, "--port", str(port), "--num_workers", "2"]
    service = procs.start("litellm", argv, env=litellm_env(tmp), cwd=tmp)
    wait_ready(service, port, "/health/liveliness", None, 240)
    status, _ = http_post(port, "/v1/chat/completions", PROMPT)
    if status != 200:
        raise Unavailable(f"a first chat call through LiteLLM answered HTTP {status}: {last_line(service)}")
    return service, port, version


# measurements ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    headers: dict
    stream_port: int
    stream_headers: dict
    stream_model: str = MODEL


def loadgen(spec: dict, timeout: float) -> dict:
    result = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH / "loadgen.py")], input=json.dumps(spec), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode:
        raise RuntimeError(f"loadgen failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


class Bench:
    def __init__(self, sizes: dict, all_services: list[Service]):
        self.sizes = sizes
        self.all_services = all_services

    def run(self, target: Target, spec: dict, timeout: float) -> dict:
        """One loadgen run against a target, with the CPU seconds each service group spent meanwhile."""
        before = {s.name: s.cpu_seconds() for s in self.all_services}
        result = loadgen({"host": HOST, "path": "/v1/chat/completions", **spec}, timeout)
        result["cpu_s"] = {s.name: round(s.cpu_seconds() - before[s.name], 2) for s in self.all_services}
        result["cpu_s"]["loadgen"] = round(result.pop("loadgen_cpu_s"), 2)
        return result

    def overhead(self, target: Target) -> dict:
        spec = {
            "mode": "sequential",
            "port": target.port,
            "headers": target.headers,
            "body": PROMPT,
            "count": self.sizes["sequential"],
            "warmup": self.sizes["warmup"],
            "max_seconds": 300,
        }
        if target.name == "aura":
            spec["collect_header"] = "x-aura-overhead-ms"
        return self.run(target, spec, 400)

    def throughput(self, target: Target) -> dict:
        spec = {"mode": "throughput", "port": target.port, "headers": target.headers, "body": PROMPT, "connections": CONNECTIONS}
        self.run(target, {**spec, "duration": 2}, 60)  # warm-up: every worker, every connection pool
        return self.run(target, {**spec, "duration": self.sizes["throughput_s"]}, self.sizes["throughput_s"] + 90)

    def streams(self, target: Target, count: int) -> dict:
        body = {**PROMPT, "model": target.stream_model, "stream": True}
        spec = {"mode": "streams", "port": target.stream_port, "headers": target.stream_headers, "body": body, "timeout": 120}
        return self.run(target, {**spec, "streams": count}, 240)

    def calls(self, target: Target, count: int) -> dict:
        spec = {"mode": "calls", "port": target.port, "headers": target.headers, "body": PROMPT, "connections": CONNECTIONS}
        return self.run(target, {**spec, "calls": count, "max_seconds": 600}, 700)


# the report --------------------------------------------------------------------------------------


def num(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def pair(stats: dict, digits: int) -> str:
    return f"{stats['p50']:.{digits}f} / {stats['p99']:.{digits}f}"


def pct(part, whole) -> float | None:
    return part / whole * 100 if part is not None and whole else None


def derive(results: dict) -> dict:
    """The comparisons the brief asks for, from the raw results."""
    out: dict = {}
    over = results.get("overhead", {})
    direct = over.get("direct", {}).get("latency_ms", {})
    for name in ("aura", "litellm"):
        lat = over.get(name, {}).get("latency_ms", {})
        if lat.get("n") and direct.get("n"):
            out[f"{name}_added_p50_ms"] = lat["p50"] - direct["p50"]
            out[f"{name}_added_p99_ms"] = lat["p99"] - direct["p99"]
    header = over.get("aura", {}).get("header", {})
    out["aura_header_overhead_p50_ms"] = header.get("p50")
    tp = results.get("throughput", {})
    if tp.get("aura", {}).get("rps") and tp.get("litellm", {}).get("rps"):
        out["throughput_aura_over_litellm"] = tp["aura"]["rps"] / tp["litellm"]["rps"]
    st = results.get("streams", {})
    direct_rate = st.get("direct", {}).get("completed_per_s")
    for name in ("direct", "aura", "litellm"):
        if name in st:
            out[f"streams_{name}_pct_of_direct"] = pct(st[name].get("completed_per_s"), direct_rate)
    return out


def verdicts(results: dict, derived: dict, sizes: dict) -> list[tuple[str, bool | None, str]]:
    added = derived.get("aura_added_p50_ms")
    ratio = derived.get("throughput_aura_over_litellm")
    aura_streams = results.get("streams", {}).get("aura", {})
    share = derived.get("streams_aura_pct_of_direct")
    stream_ok = None
    if aura_streams and share is not None:
        stream_ok = aura_streams.get("errors") == 0 and aura_streams.get("ok") == sizes["streams"] and share >= 50
    return [
        ("AURA p50 overhead <= 2 ms", None if added is None else added <= 2, num(added, 2, " ms")),
        ("AURA throughput >= 4x LiteLLM", None if ratio is None else ratio >= 4, num(ratio, 2, "x")),
        (
            f"{sizes['streams']} slow streams: 0 errors, >= 50% of direct's rate",
            stream_ok,
            f"{aura_streams.get('errors', 'n/a')} errors, {num(share, 0, '%')}",
        ),
    ]


def table(report: dict) -> str:
    sizes, results, derived = report["sizes"], report["results"], report["derived"]
    names = ["direct", "aura", "litellm"]
    width = 40
    lines = []

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"  {label:<{width}}" + "".join(f"{c:>16}" for c in cells))

    def cell(phase: str, name: str, getter) -> str:
        data = results.get(phase, {}).get(name)
        if data is None:
            return "n/a"
        try:
            return getter(data)
        except (KeyError, TypeError):
            return "n/a"

    litellm = report["litellm"]
    lines.append(
        f"AURA gateway benchmark: {'quick' if report['quick'] else 'full'} run, {report['timestamp']}, "
        f"{report['machine']['cpus']} cores, loopback"
    )
    lines.append(f"  LiteLLM: {litellm['version'] if litellm['available'] else 'not available: ' + litellm['reason']}")
    row("", ["direct", "AURA", "LiteLLM"])
    lines.append(f"a. overhead: 1 connection, {sizes['sequential']} sequential non-stream calls")
    row(
        "latency p50 / p99 ms",
        [cell("overhead", n, lambda d: pair(d["latency_ms"], 2)) for n in names],
    )
    row(
        "added vs direct p50 / p99 ms",
        ["-"]
        + [
            f"{derived[f'{n}_added_p50_ms']:.2f} / {derived[f'{n}_added_p99_ms']:.2f}" if f"{n}_added_p50_ms" in derived else "n/a"
            for n in ("aura", "litellm")
        ],
    )
    row("x-aura-overhead-ms median", ["-", num(derived.get("aura_header_overhead_p50_ms")), "-"])
    row("errors", [cell("overhead", n, lambda d: str(d["errors"])) for n in names])
    lines.append(f"b. throughput: {CONNECTIONS} keep-alive connections, {sizes['throughput_s']} s")
    row("requests/s", [cell("throughput", n, lambda d: f"{d['rps']:,.0f}") for n in names])
    row(
        "latency p50 / p99 ms",
        [cell("throughput", n, lambda d: pair(d["latency_ms"], 1)) for n in names],
    )
    row("errors", [cell("throughput", n, lambda d: str(d["errors"])) for n in names])
    row("AURA / LiteLLM", ["", num(derived.get("throughput_aura_over_litellm"), 2, "x"), ""])
    lines.append(f"c. concurrency: {sizes['streams']} concurrent streams, {CHUNKS} chunks {SLOW_CHUNK_DELAY_MS} ms apart")
    row("completed/s", [cell("streams", n, lambda d: f"{d['completed_per_s']:,.0f}") for n in names])
    row("% of direct", [num(derived.get(f"streams_{n}_pct_of_direct"), 0, "%") for n in names])
    row("completed / errors", [cell("streams", n, lambda d: f"{d['ok']} / {d['errors']}") for n in names])
    row("total time p50 / p99 s", [cell("streams", n, lambda d: pair(d["total_s"], 2)) for n in names])
    row(
        "first byte p50 / p99 s",
        [cell("streams", n, lambda d: pair(d["first_byte_s"], 2)) for n in names],
    )
    memory = results.get("memory", {})
    if memory:
        before, after = memory["rss_kb_before"], memory["rss_kb_after"]
        lines.append(f"d. memory: {memory['calls']} non-stream calls through AURA ({CONNECTIONS} connections)")
        lines.append(
            f"  gunicorn workers RSS: {sum(before.values()) / 1024:.1f} MB before -> {sum(after.values()) / 1024:.1f} MB after "
            f"({(sum(after.values()) - sum(before.values())) / 1024:+.1f} MB; {len(after)} workers)"
        )
        lines.append(f"  calls ok / errors: {memory['ok']} / {memory['errors']}; {memory['rps']:,.0f} requests/s")
        lines.append(f"  usage records: {memory['records_added']:+d} (expected {memory['calls']})")
    st = results.get("streams", {}).get("aura")
    if st and "records_added" in st:
        lines.append(f"  (concurrency phase) usage records: {st['records_added']:+d} (expected {st['streams']})")
    lines.append("targets:")
    for label, passed, value in report["verdicts"]:
        mark = "n/a " if passed is None else ("PASS" if passed else "FAIL")
        lines.append(f"  [{mark}] {label}: {value}")
    if report.get("aura_log"):
        lines.append("AURA log, warnings and errors (count: shape):")
        for shape, count in list(report["aura_log"].items())[:5]:
            lines.append(f"  {count:>6}: {shape[:150]}")
    return "\n".join(lines)


# the run -----------------------------------------------------------------------------------------


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs, for a first look")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (reported as not available)")
    parser.add_argument("--no-litellm-install", action="store_true", help="do not create bench/.venv-litellm when it is missing")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (their folder is printed)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    os.chdir(ROOT)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="aura-bench-"))
    procs = Processes(tmp)
    keep_logs = args.keep_logs
    report: dict = {
        "timestamp": stamp,
        "quick": args.quick,
        "sizes": sizes,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "versions": {p: metadata.version(p) for p in ("django", "gunicorn", "gevent", "greenlet", "psycopg", "requests", "redis")},
        "setup": {
            "upstream_chunks": CHUNKS,
            "slow_chunk_delay_ms": SLOW_CHUNK_DELAY_MS,
            "connections": CONNECTIONS,
            "aura": "gunicorn aura.wsgi --worker-class gevent --workers 2 --worker-connections 1000 --timeout 120 --graceful-timeout 30 "
            "--access-logfile - (Procfile web line, bound to 127.0.0.1)",
            "litellm": "litellm --config <yaml> --host 127.0.0.1 --port <port> --num_workers 2 (no database)",
        },
        "results": {},
    }
    results = report["results"]
    try:
        say("starting the upstreams")
        fast_port = start_upstream(procs, "upstream-fast", 0)
        slow_port = start_upstream(procs, "upstream-slow", SLOW_CHUNK_DELAY_MS)
        upstream_headers = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
        direct = Target("direct", fast_port, upstream_headers, slow_port, upstream_headers)

        env = aura_env()
        ensure_database(env)
        say("seeding AURA")
        run_id = f"{stamp.lower()}-{secrets.token_hex(3)}"
        fast_key = seed_user(env, run_id, "fast", fast_port)
        slow_key = seed_user(env, run_id, "slow", slow_port)
        aura_port = free_port()
        say(f"starting AURA (gunicorn, gevent) on {HOST}:{aura_port}")
        aura = start_aura(procs, env, aura_port)
        wait_ready(aura, aura_port, "/v1/models", {"Authorization": f"Bearer {fast_key}"}, 60)
        aura_target = Target("aura", aura_port, {"Authorization": f"Bearer {fast_key}"}, aura_port, {"Authorization": f"Bearer {slow_key}"})

        targets = [direct, aura_target]
        report["litellm"] = {"available": False, "reason": "skipped (--no-litellm)", "version": None}
        if not args.no_litellm:
            say("starting LiteLLM")
            try:
                litellm, litellm_port, version = start_litellm(procs, tmp, fast_port, slow_port, not args.no_litellm_install)
            except Unavailable as error:
                report["litellm"] = {"available": False, "reason": str(error), "version": None}
                say(f"LiteLLM not available: {error}")
                for service in [s for s in procs.services if s.name == "litellm"]:
                    procs.stop(service)
                    procs.services.remove(service)
            else:
                report["litellm"] = {"available": True, "reason": None, "version": version}
                targets.append(Target("litellm", litellm_port, {}, litellm_port, {}, stream_model=f"{MODEL}-slow"))

        bench = Bench(sizes, procs.services)
        say(f"a. overhead: {sizes['sequential']} sequential calls each")
        results["overhead"] = {}
        for target in targets:
            results["overhead"][target.name] = bench.overhead(target)
            say(f"   {target.name}: p50 {results['overhead'][target.name]['latency_ms'].get('p50', float('nan')):.2f} ms")
        say(f"b. throughput: {CONNECTIONS} connections, {sizes['throughput_s']} s each")
        results["throughput"] = {}
        for target in targets:
            results["throughput"][target.name] = bench.throughput(target)
            say(f"   {target.name}: {results['throughput'][target.name]['rps']:,.0f} requests/s")
        say(f"c. concurrency: {sizes['streams']} concurrent streams each")
        results["streams"] = {}
        for target in targets:
            bench.streams(target, 20)  # warm-up
            before = usage_count() if target.name == "aura" else None
            results["streams"][target.name] = outcome = bench.streams(target, sizes["streams"])
            if before is not None:
                time.sleep(1)  # a stream is accounted before its [DONE]; a second covers stragglers
                outcome["records_added"] = usage_count() - before
            say(f"   {target.name}: {outcome['ok']} ok, {outcome['errors']} errors, {outcome['completed_per_s']:,.0f}/s")
        say(f"d. memory: {sizes['memory_calls']} calls through AURA")
        rss_before, records_before = worker_rss_kb(aura), usage_count()
        outcome = bench.calls(aura_target, sizes["memory_calls"])
        time.sleep(1)
        outcome.update(
            calls=sizes["memory_calls"],
            rss_kb_before=rss_before,
            rss_kb_after=worker_rss_kb(aura),
            records_added=usage_count() - records_before,
        )
        results["memory"] = outcome

        report["derived"] = derive(results)
        report["verdicts"] = verdicts(results, report["derived"], sizes)
        report["aura_log"] = log_summary(aura)
        report["log_lines"] = {s.name: sum(1 for _ in s.log.open(errors="replace")) for s in procs.services}
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"gateway-{stamp}.json"
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(table(report))
        print(f"\nresults: {out.relative_to(ROOT)}")
        return 0
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    except Exception:
        keep_logs = True
        for service in procs.services:
            say(f"--- {service.name} log tail ---\n{service.tail()}")
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        if keep_logs:
            say(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
