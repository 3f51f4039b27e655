"""Where AURA spends its time on a non-stream chat call: cProfile in one gunicorn *sync* worker.

    .venv/bin/python bench/profile_aura.py [--calls 2000] [--top 10] [--save PATH] [--worker-class sync|gevent]

From the repository root. Starts ``bench/fast_upstream.py`` and AURA exactly as bench/gateway.py does
(same database, Redis, settings, tenants on the team plan), but under ``gunicorn --worker-class sync --workers 1``
with ``bench/gunicorn_profile.py``, which profiles each request in the worker. It sends the calls on
one keep-alive connection (a sync worker closes it after each response, so each call reconnects),
stops everything, and prints the functions with the most cumulative time: first those in AURA's own
code, then everything (Django, requests, psycopg...). Times are wall-clock: what the caller waits
for, waits on Redis, PostgreSQL and the upstream included. (A CPU-time clock was tried and dropped:
cProfile's per-event cost then swamps the small functions.) ``--save`` keeps the raw pstats file.
"""

import argparse
import contextlib
import io
import os
import pstats
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as bench  # noqa: E402 -- the sibling module, found through the path set just above


def aura_code(filename: str) -> bool:
    path = Path(filename)
    return path.is_absolute() and bench.ROOT in path.parents and ".venv" not in path.parts and "bench" not in path.parts


def report(stats: pstats.Stats, top: int, only_aura: bool) -> str:
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        if only_aura and not aura_code(filename):
            continue
        where = str(Path(filename).relative_to(bench.ROOT)) if aura_code(filename) else filename.rsplit("site-packages/", 1)[-1]
        rows.append((cumtime, tottime, calls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    lines = [f"{'cumulative s':>12} {'per call ms':>11} {'own s':>8} {'calls':>7}  function"]
    for cumtime, tottime, calls, label in rows[:top]:
        lines.append(f"{cumtime:>12.3f} {cumtime / max(calls, 1) * 1000:>11.3f} {tottime:>8.3f} {calls:>7}  {label}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--save", type=Path, help="keep the raw pstats file here")
    parser.add_argument(
        "--worker-class", choices=("sync", "gevent"), default="sync", help="gevent: as the Procfile runs it, one keep-alive connection"
    )
    parser.add_argument("--stream", action="store_true", help="streamed calls (10 chunks back to back each), to see what relaying costs")
    args = parser.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench._interrupt)
    os.chdir(bench.ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="aura-profile-"))
    procs = bench.Processes(tmp)
    try:
        fast_port = bench.start_upstream(procs, "upstream-fast", 0)
        env = bench.aura_env()
        bench.ensure_database(env)
        stamp = datetime.now(UTC).strftime("%Y%m%dt%H%M%Sz")
        # Tenants on the team plan, in turn, as in bench/gateway.py: one account would hit its plan's limits.
        keys = bench.seed_tenants(env, f"{stamp}-{secrets.token_hex(3)}", {"profile": fast_port})["profile"]
        identities = [{"Authorization": f"Bearer {key}"} for key in keys]
        port = bench.free_port()
        out = tmp / "aura.pstats"
        argv = [
            str(bench.VENV_BIN / "gunicorn"),
            "aura.wsgi",
            "--bind",
            f"{bench.HOST}:{port}",
            "--worker-class",
            args.worker_class,
            "--workers",
            "1",
            "--timeout",
            "120",
            "--access-logfile",
            "-",
            "--logger-class",
            "aura.gunicorn_logging.AccessLogger",
            "--config",
            str(bench.BENCH / "gunicorn_profile.py"),
        ]
        env_extra = {"DATABASE_POOL_SIZE": "10"} if args.worker_class == "gevent" else {}  # as the Procfile's web line
        aura = procs.start("aura", argv, env={**env, **env_extra, "AURA_BENCH_PROFILE_OUT": str(out)})
        bench.wait_ready(aura, port, "/v1/models", identities[0], 60)
        spec = {"mode": "sequential", "host": bench.HOST, "port": port, "path": "/v1/chat/completions", "identities": identities}
        body = {**bench.PROMPT, "stream": True} if args.stream else bench.PROMPT
        spec.update(body=body, count=args.calls, warmup=0, collect_header="x-aura-overhead-ms", max_seconds=600)
        result = bench.loadgen(spec, 700)
        print(
            f"{result['ok']} calls ({result['errors']} errors) under cProfile: p50 {result['latency_ms']['p50']:.2f} ms, "
            f"x-aura-overhead-ms p50 {result['header'].get('p50', float('nan')):.2f} (profiling inflates both)"
        )
        procs.stop(aura)  # worker_exit dumps the stats
        for _ in range(50):
            dumps = list(tmp.glob("aura.pstats.*"))
            if dumps:
                break
            time.sleep(0.1)
        if not dumps:
            raise RuntimeError("the worker wrote no profile")
        stats = pstats.Stats(str(dumps[0]), stream=io.StringIO())
        print(f"\nTop {args.top} by cumulative wall-clock time, AURA's code ({bench.ROOT}):")
        print(report(stats, args.top, only_aura=True))
        print(f"\nTop {args.top * 2} by cumulative wall-clock time, everything:")
        print(report(stats, args.top * 2, only_aura=False))
        if args.save:
            shutil.copy(dumps[0], args.save)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(Exception):
            procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
