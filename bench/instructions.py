"""Instructions per /v1 call in AURA's web worker, counted by valgrind's callgrind: the same count
for the same code whatever else the machine is doing, where a clock on this shared box drifts by
tens of percent within the hour.

    .venv/bin/python bench/instructions.py [--before REV] [--calls 300] [--stream]

From the repository root; needs valgrind (``apt-get install valgrind``). Starts the stand-in
upstream and AURA exactly as bench/gateway.py does (production settings, PostgreSQL database
``aura_bench``, Redis database 14, tenants on the team plan), but with one gevent worker under
``valgrind --tool=callgrind`` (about fifty times slower, so this takes minutes). After 200 calls to
warm it up, it zeroes the counters, sends ``--calls`` sequential calls on one keep-alive
connection, and divides the worker's instruction count by the calls answered. Everything the
worker did meanwhile counts: the request, the settling after it, gevent's hub, the spool flusher.

With ``--before REV`` a ``git worktree`` of REV is measured at the same time (each valgrind runs on
one core), and the ratio is printed. The schema is migrated by the current tree: REV must not need a
different one. The count still moves between runs of the same code: by about 1.5 % for code
whose path does not depend on timing, by up to 5 % where it does (whether a call's settling rides
along with the next call's admission depends on which comes first), so a change smaller than that
is not seen. Under valgrind AURA is the slow side: the load generator's next call is nearly always
there already. What it counts is CPU, not waits: a round trip saved shows only by what it cost.
"""

import argparse
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as bench  # noqa: E402 -- the sibling module, found through the path set just above

WARMUP = 200


def count(procs: bench.Processes, env: dict, tmp: Path, name: str, cwd: Path, identities: list[dict], calls: int, stream: bool) -> float:
    """Millions of instructions per call in the worker of an AURA started from ``cwd``."""
    port = bench.free_port()
    out = tmp / f"callgrind-{name}"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        f"--callgrind-out-file={out}.%p",
        str(bench.VENV_BIN / "python"),
        str(bench.VENV_BIN / "gunicorn"),
        "aura.wsgi",
        "--bind",
        f"{bench.HOST}:{port}",
        "--worker-class",
        "gevent",
        "--workers",
        "1",
        "--worker-connections",
        "1000",
        "--timeout",
        "600",
        "--access-logfile",
        "-",
        "--logger-class",
        "aura.gunicorn_logging.AccessLogger",
    ]
    aura = procs.start(f"aura-{name}", argv, env=env, cwd=cwd)
    bench.wait_ready(aura, port, "/v1/models", identities[0], 900)
    body = {**bench.PROMPT, "stream": True} if stream else bench.PROMPT
    spec = {"host": bench.HOST, "path": "/v1/chat/completions", "port": port, "identities": identities, "body": body}
    spec.update(mode="sequential", count=WARMUP, warmup=0, max_seconds=900)
    bench.loadgen(spec, 1200)
    (worker,) = [pid for pid, (_comm, ppid, *_rest) in bench.cpu_snapshot().items() if ppid == str(aura.pid)]
    subprocess.run(["callgrind_control", "--zero", str(worker)], check=True, capture_output=True, timeout=120)  # noqa: S603, S607
    result = bench.loadgen({**spec, "count": calls}, 3600)
    subprocess.run(["callgrind_control", "--dump", str(worker)], check=True, capture_output=True, timeout=120)  # noqa: S603, S607
    if result["errors"] or not result["ok"]:
        raise RuntimeError(f"{name}: {result['errors']} errors in {calls} calls")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        dumps = sorted(tmp.glob(f"{out.name}.{worker}.*"), key=lambda path: path.stat().st_mtime)
        found = dumps and re.search(r"^(?:summary|totals): (\d+)", dumps[-1].read_text(errors="replace"), re.M)
        if found:
            return int(found.group(1)) / result["ok"] / 1e6
        time.sleep(0.5)
    raise RuntimeError(f"{name}: callgrind wrote no dump")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="also count a git revision (a commit, tag or branch), at the same time")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--stream", action="store_true", help="streamed calls (10 chunks back to back each)")
    args = parser.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="aura-instructions-"))
    procs = bench.Processes(tmp)
    checkout = tmp / "before"
    try:
        revisions = {"now": bench.ROOT}
        if args.before:
            subprocess.run(  # noqa: S603
                ["git", "worktree", "add", "--detach", str(checkout), args.before],  # noqa: S607
                cwd=bench.ROOT,
                check=True,
                capture_output=True,
            )
            revisions = {"before": checkout, **revisions}
        bench.say("starting the upstream and seeding the tenants")
        upstream = bench.start_upstream(procs, "upstream", 0)
        env = bench.aura_env()
        bench.ensure_database(env)
        tenants = bench.seed_tenants(env, f"instructions-{secrets.token_hex(4)}", {"fast": upstream})["fast"]
        identities = [{"Authorization": f"Bearer {key}"} for key in tenants]
        counts, failures = {}, {}

        def measure(name: str, cwd: Path) -> None:
            try:
                counts[name] = count(procs, env, tmp, name, cwd, identities, args.calls, args.stream)
            except Exception as error:
                failures[name] = error

        bench.say(f"counting {', '.join(revisions)} under callgrind (minutes)")
        threads = [threading.Thread(target=measure, args=item) for item in revisions.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise RuntimeError("; ".join(f"{name}: {error}" for name, error in failures.items()))
        kind = "streamed" if args.stream else "non-stream"
        for name in revisions:
            label = f"AURA at {args.before}" if name == "before" else "AURA now"
            print(f"{label}: {counts[name]:.3f} M instructions per {kind} call ({args.calls} calls, sequential)")
        if args.before:
            print(f"now / before: {counts['now'] / counts['before']:.3f}x")
        return 0
    finally:
        procs.stop_all()
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=bench.ROOT, check=False, capture_output=True)  # noqa: S603, S607
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
