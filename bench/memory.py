"""Whether AURA's web workers grow with the calls they serve: their RSS after each of many rounds.

    .venv/bin/python bench/memory.py [--rounds 20] [--calls 10000]

From the repository root. bench/gateway.py's memory phase reads the workers' RSS before and after
one batch of 10,000 calls; a reading of a megabyte or two there does not tell a leak from the
allocator settling in. This starts the fast stand-in upstream and AURA exactly as bench/gateway.py
does (the Procfile's web command, production settings, PostgreSQL and Redis, 150 tenants on the
team plan), sends ``--rounds`` batches of ``--calls`` non-stream calls over 50 keep-alive
connections, and prints each worker's RSS after each batch. A leak grows in every round by about
the same amount; settling grows in steps that stop. The summary compares the first half of the
rounds with the second. No key is printed.
"""

import argparse
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as bench  # noqa: E402 -- the sibling module, found through the path set just above


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # (a timeout's TERM too): everything started is stopped
        signal.signal(signum, bench._interrupt)
    tmp = Path(tempfile.mkdtemp(prefix="aura-memory-"))
    procs = bench.Processes(tmp)
    try:
        upstream = bench.start_upstream(procs, "upstream", 0)
        env = bench.aura_env()
        bench.ensure_database(env)
        bench.say("seeding the tenants")
        keys = bench.seed_tenants(env, f"memory-{secrets.token_hex(4)}", {"fast": upstream})["fast"]
        identities = [{"Authorization": f"Bearer {key}"} for key in keys]
        port = bench.free_port()
        aura = bench.start_aura(procs, env, port)
        bench.wait_ready(aura, port, "/v1/models", identities[0], 60)
        spec = {"mode": "calls", "host": bench.HOST, "port": port, "path": "/v1/chat/completions", "identities": identities}
        spec |= {"body": bench.PROMPT, "connections": bench.CONNECTIONS, "calls": args.calls, "max_seconds": 600}
        totals = []
        print(f"AURA's gunicorn workers, RSS in MB after each round of {args.calls:,} calls")
        for round_ in range(1, args.rounds + 1):
            result = bench.loadgen(spec, 700)
            if result["errors"]:
                raise RuntimeError(f"round {round_}: {result['errors']} errors ({result['error_kinds']})")
            rss = bench.worker_rss_kb(aura)
            totals.append(sum(rss.values()) / 1024)
            each = ", ".join(f"{kb / 1024:.1f}" for _pid, kb in sorted(rss.items()))
            print(f"  round {round_:>2}: {totals[-1]:.1f} (workers: {each})", flush=True)
        half = args.rounds // 2
        per = args.calls * (args.rounds - half)
        print(f"first half: {totals[0]:.1f} -> {totals[half - 1]:.1f} MB ({totals[half - 1] - totals[0]:+.1f})")
        late = totals[-1] - totals[half - 1]
        print(f"second half: {totals[half - 1]:.1f} -> {totals[-1]:.1f} MB ({late:+.1f}, {late * 2**20 / per:.1f} bytes per call)")
        return 0
    except KeyboardInterrupt:
        bench.say("interrupted: stopping everything")
        return 130
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
