"""gunicorn config for bench/profile_aura.py: cProfile each request in the worker, dump the stats on exit.

The profiler runs only between ``pre_request`` and ``post_request``, so idle waiting is not counted.
It clocks wall time: what a caller waits for, waits on Redis, PostgreSQL and the upstream included.
The stats go to the file named by ``AURA_BENCH_PROFILE_OUT`` (one file per worker pid).
"""

import cProfile
import os

_profiles: dict[int, cProfile.Profile] = {}


def post_fork(server, worker):
    _profiles[worker.pid] = cProfile.Profile()


def pre_request(worker, req):
    _profiles[worker.pid].enable()


def post_request(worker, req, environ, resp):
    _profiles[worker.pid].disable()


def worker_exit(server, worker):
    profile = _profiles.pop(worker.pid, None)
    if profile is not None:
        profile.disable()
        profile.dump_stats(f"{os.environ['AURA_BENCH_PROFILE_OUT']}.{worker.pid}")
