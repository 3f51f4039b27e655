"""Celery beat's schedule, run in one process with no broker: the embedded demo's beat.

``make run`` serves AURA on its embedded defaults, where Celery has no broker and a task runs in
the process that queues it, so a real ``celery beat`` would have nowhere to send its jobs.
``python manage.py aura beat-embedded`` (``bin/run`` starts it beside the web server) runs the
entries of ``CELERY_BEAT_SCHEDULE`` itself, at their intervals and after their countdowns: the
retention jobs, the usage rollups and the alert checks. Unlike beat, which waits an interval after
it starts, every job runs at start (after its countdown), so a demo's numbers are fresh at once.
Each job keeps to its own grid (start + countdown + a whole number of intervals), so the alert
check stays a minute behind the rollup it reads; a job that overran its next times, or fell due
while the machine slept, runs once and goes back to its grid. Due times are on the wall clock (a
monotonic clock stops while a laptop sleeps) and the loop wakes at least once a minute to see them.
With a broker configured the command refuses: production runs ``celery -A aura beat`` and workers.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

log = logging.getLogger(__name__)

LONGEST_SLEEP = 60.0  # seconds: a clock that jumped (a suspend, a change of time) is seen within a minute


@dataclass
class Job:
    name: str
    task: str
    interval: float  # seconds
    args: tuple
    kwargs: dict
    due: float  # on the clock run() is given


def jobs(schedule: dict, start: float) -> list[Job]:
    """The schedule's entries, each first due after its countdown (beat's ``options``), in order."""
    found = []
    for name, entry in schedule.items():
        interval = entry["schedule"]
        if isinstance(interval, timedelta):
            interval = interval.total_seconds()
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"schedule entry {name!r}: only a number of seconds or a timedelta runs here")
        countdown = (entry.get("options") or {}).get("countdown", 0)
        found.append(
            Job(name, entry["task"], float(interval), tuple(entry.get("args", ())), dict(entry.get("kwargs", {})), start + countdown)
        )
    return sorted(found, key=lambda job: job.due)


def run(schedule: dict, run_job, *, clock=time.time, sleep=time.sleep, until: float | None = None) -> None:
    """Call ``run_job(job)`` for each job when it is due, for ever (or until ``clock()`` reaches ``until``)."""
    pending = jobs(schedule, clock())
    while True:
        now = clock()
        if until is not None and now >= until:
            return
        for job in sorted(pending, key=lambda job: job.due):
            if job.due <= now:
                run_job(job)
                later = clock()
                while job.due <= later:  # the next time on its grid still ahead: missed ones are not made up
                    job.due += job.interval
        wake = min(job.due for job in pending)
        if until is not None:
            wake = min(wake, until)
        sleep(min(max(wake - clock(), 0), LONGEST_SLEEP))


def run_task(job: Job) -> str:
    """One job, as a worker would run it: "ok", or the class of the error it failed with (logged)."""
    from django.db import close_old_connections

    from aura.celery import app

    close_old_connections()
    try:
        app.tasks[job.task].apply(args=job.args, kwargs=job.kwargs, throw=True)
        return "ok"
    except Exception as error:  # the next interval tries again, as beat's next send would
        log.exception("scheduled job %s failed", job.name)  # aura.logging keeps the stack, not the message
        return type(error).__name__
    finally:
        close_old_connections()
