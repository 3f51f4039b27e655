"""AURA against AURA at another git revision, side by side in one run: which change made it faster.

    .venv/bin/python bench/gateway_ab.py --before REV [--rounds 8] [--calls 300] [--seconds 4]

From the repository root. The machine is shared and its speed drifts from minute to minute, so two
benchmark runs minutes apart cannot tell a 10% change from noise. This starts both versions at
once, exactly as bench/gateway.py starts AURA (the Procfile's web command, gunicorn with gevent,
production settings, the same PostgreSQL database ``aura_bench`` and Redis database 14), the older
one from a ``git worktree`` of REV, both in front of one fast stand-in upstream, and measures them
in alternating rounds, in a shuffled order each round:

- added latency: ``--calls`` sequential non-stream calls on one keep-alive connection (p50 minus
  the upstream's own p50, measured in the same round);
- throughput: 50 keep-alive connections for ``--seconds``: requests/s, and the CPU time each version's
  processes spent per call meanwhile (on this CPU-bound machine, the figure a change moves most surely).

With ``--streams N`` each round is instead a burst of N concurrent streamed calls against a slow
upstream (chunks 100 ms apart, as bench/gateway.py's concurrency phase), for the upstream called
directly and for each version: completed/s as a percentage of direct's in the same round.

With ``--held N`` each round instead keeps N keep-alive connections streaming for ``--seconds``
against the slow upstream (each streams again as soon as its stream ends, as bench/gateway.py's held
streams): completed/s as a percentage of direct's, and each version's CPU time per stream answered
(the stream's whole cost, on a machine these streams keep busy: the figure to read first).

It prints the median over the rounds for each version and their ratio, and removes the worktree.
The schema is migrated by the current tree: REV must not need a different one. Nothing is written
to the repository; no key is printed.
"""

import argparse
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as bench  # noqa: E402 -- the sibling module, found through the path set just above


def cpu_seconds(service: bench.Service | None) -> float:
    """CPU seconds a service's processes have used so far (0 for none: the upstream called directly)."""
    if service is None:
        return 0.0
    mine = set(service.pids())
    return sum(seconds for pid, (_comm, _ppid, _session, seconds, _start) in bench.cpu_snapshot().items() if pid in mine)


def measure(port: int, identities: list[dict], calls: int, seconds: float, service=None) -> tuple[float, float, float]:
    """(p50 ms of sequential calls, requests/s at 50 connections, the service's CPU ms per call at 50) against one target."""
    common = {"host": bench.HOST, "path": "/v1/chat/completions", "port": port, "identities": identities, "body": bench.PROMPT}
    sequential = bench.loadgen({**common, "mode": "sequential", "count": calls, "warmup": 30, "max_seconds": 120}, 200)
    used = cpu_seconds(service)
    busy = bench.loadgen({**common, "mode": "throughput", "connections": bench.CONNECTIONS, "duration": seconds}, seconds + 90)
    used = cpu_seconds(service) - used
    if sequential["errors"] or busy["errors"]:
        raise RuntimeError(f"errors against port {port}: {sequential['errors']} sequential, {busy['errors']} concurrent")
    return sequential["latency_ms"]["p50"], busy["rps"], used * 1000 / max(busy["answered_200"], 1)


def streamed(port: int, identities: list[dict]) -> dict:
    """The load generator's spec for streamed calls to ``port``."""
    body = {**bench.PROMPT, "stream": True}
    return {"host": bench.HOST, "path": "/v1/chat/completions", "port": port, "identities": identities, "body": body, "timeout": 120}


def burst(port: int, identities: list[dict], count: int) -> float:
    """Completed/s of ``count`` concurrent streams, each on its own connection."""
    result = bench.loadgen({**streamed(port, identities), "mode": "streams", "streams": count}, 240)
    if result["errors"]:
        raise RuntimeError(f"errors against port {port}: {result['errors']} ({result['error_kinds']})")
    return result["completed_per_s"]


def held(port: int, identities: list[dict], count: int, seconds: float, service=None) -> tuple[float, float]:
    """(completed/s, the service's CPU ms per stream answered) of ``count`` connections streaming for ``seconds``."""
    used = cpu_seconds(service)
    result = bench.loadgen({**streamed(port, identities), "mode": "throughput", "connections": count, "duration": seconds}, seconds + 150)
    used = cpu_seconds(service) - used
    if result["errors"]:
        raise RuntimeError(f"errors against port {port}: {result['errors']} ({result['error_kinds']})")
    return result["rps"], used * 1000 / max(result["answered_200"], 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the git revision to compare against (a commit, tag or branch)")
    parser.add_argument(
        "--before-python", type=Path, default=None, help="run the older side on this venv's python (default: this script's)"
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--streams", type=int, default=0, help="measure bursts of this many streams instead")
    parser.add_argument("--held", type=int, default=0, help="measure this many streams kept going instead")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="aura-ab-"))
    checkout = tmp / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(checkout), args.before], cwd=bench.ROOT, check=True, capture_output=True)  # noqa: S603, S607
    procs = bench.Processes(tmp)
    try:
        bench.say("starting the upstream")
        streams = args.streams > 0 or args.held > 0
        upstream = bench.start_upstream(procs, "upstream", bench.SLOW_CHUNK_DELAY_MS if streams else 0)
        env = bench.aura_env()
        bench.ensure_database(env)
        bench.say("seeding the tenants")
        run_id = f"ab-{secrets.token_hex(4)}"
        group = "slow" if streams else "fast"
        tenants = bench.seed_tenants(env, run_id, {group: upstream})[group]
        identities = [{"Authorization": f"Bearer {key}"} for key in tenants]
        ports, services = {}, {}
        before_bin = args.before_python.absolute().parent if args.before_python else bench.VENV_BIN
        for name, cwd, venv_bin in (("before", checkout, before_bin), ("now", bench.ROOT, bench.VENV_BIN)):
            ports[name] = bench.free_port()
            services[name] = bench.start_aura(procs, env, ports[name], name=f"aura-{name}", cwd=cwd, venv_bin=venv_bin)
            bench.wait_ready(services[name], ports[name], "/v1/models", identities[0], 60)
        direct = [{"Authorization": f"Bearer {bench.UPSTREAM_KEY}"}]
        if args.held:
            return compare_held(args, upstream, direct, ports, identities, services)
        if streams:
            return compare_bursts(args, upstream, direct, ports, identities)
        results = {name: {"added": [], "rps": [], "cpu": []} for name in ports}
        rng = random.Random(20261127)
        for round_ in range(1, args.rounds + 1):
            bench.wait_quiet(60)
            base, _, _ = measure(upstream, direct, args.calls, 1)
            order = list(ports)
            rng.shuffle(order)
            for name in order:
                p50, rps, cpu = measure(ports[name], identities, args.calls, args.seconds, services[name])
                results[name]["added"].append(p50 - base)
                results[name]["rps"].append(rps)
                results[name]["cpu"].append(cpu)
            bench.say(
                f"round {round_}: "
                + ", ".join(
                    f"{n} +{results[n]['added'][-1]:.2f} ms {results[n]['rps'][-1]:,.0f} req/s {results[n]['cpu'][-1]:.2f} ms CPU/call"
                    for n in ports
                )
            )
        before = {k: statistics.median(v) for k, v in results["before"].items()}
        now = {k: statistics.median(v) for k, v in results["now"].items()}
        print(f"AURA now against AURA at {args.before}: medians of {args.rounds} interleaved rounds")
        added, rps, cpu = now["added"] / before["added"], now["rps"] / before["rps"], now["cpu"] / before["cpu"]
        print(f"  added latency p50, 1 connection: before {before['added']:.2f} ms, now {now['added']:.2f} ms ({added:.2f}x)")
        print(f"  requests/s at {bench.CONNECTIONS} connections: before {before['rps']:,.0f}, now {now['rps']:,.0f} ({rps:.2f}x)")
        print(f"  CPU per call at {bench.CONNECTIONS} connections: before {before['cpu']:.2f} ms, now {now['cpu']:.2f} ms ({cpu:.2f}x)")
        return 0
    finally:
        procs.stop_all()
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=bench.ROOT, check=False, capture_output=True)  # noqa: S603, S607
        shutil.rmtree(tmp, ignore_errors=True)


def compare_bursts(args, upstream: int, direct: list[dict], ports: dict, identities: list[dict]) -> int:
    for name in ports:  # every tenant once on each version, as bench/gateway.py warms up
        burst(ports[name], identities, len(identities))
    shares = {name: [] for name in ports}
    rng = random.Random(20261127)
    for round_ in range(1, args.rounds + 1):
        bench.wait_quiet(60)
        base = burst(upstream, direct, args.streams)
        order = list(ports)
        rng.shuffle(order)
        for name in order:
            shares[name].append(100 * burst(ports[name], identities, args.streams) / base)
        bench.say(f"round {round_}: direct {base:,.0f}/s, " + ", ".join(f"{n} {shares[n][-1]:.0f}%" for n in ports))
    before, now = statistics.median(shares["before"]), statistics.median(shares["now"])
    print(f"AURA now against AURA at {args.before}: medians of {args.rounds} interleaved rounds")
    print(f"  {args.streams} concurrent streams, completed/s as % of direct's: before {before:.0f}%, now {now:.0f}% ({now / before:.2f}x)")
    return 0


def compare_held(args, upstream: int, direct: list[dict], ports: dict, identities: list[dict], services: dict) -> int:
    for name in ports:  # every tenant and connection pool warm on each version
        held(ports[name], identities, args.held, 2)
    shares, cpu = {name: [] for name in ports}, {name: [] for name in ports}
    rng = random.Random(20261129)
    for round_ in range(1, args.rounds + 1):
        bench.wait_quiet(60)
        base, _ = held(upstream, direct, args.held, args.seconds)
        order = list(ports)
        rng.shuffle(order)
        for name in order:
            rate, ms = held(ports[name], identities, args.held, args.seconds, services[name])
            shares[name].append(100 * rate / base)
            cpu[name].append(ms)
        bench.say(
            f"round {round_}: direct {base:,.0f}/s, " + ", ".join(f"{n} {shares[n][-1]:.0f}% {cpu[n][-1]:.2f} ms CPU/stream" for n in ports)
        )
    before, now = statistics.median(shares["before"]), statistics.median(shares["now"])
    cpu_before, cpu_now = statistics.median(cpu["before"]), statistics.median(cpu["now"])
    print(f"AURA now against AURA at {args.before}: medians of {args.rounds} interleaved rounds")
    kept = f"{args.held} streams kept going {args.seconds:g} s"
    print(f"  {kept}, completed/s as % of direct's: before {before:.0f}%, now {now:.0f}% ({now / before:.2f}x)")
    print(f"  CPU per stream: before {cpu_before:.2f} ms, now {cpu_now:.2f} ms ({cpu_now / cpu_before:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
