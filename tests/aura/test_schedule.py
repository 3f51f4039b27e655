"""The embedded demo's beat: Celery beat's schedule run in one process, with no broker (aura.schedule)."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from aura import schedule

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """A clock that only moves when the loop sleeps; it holds the loop to waking at least once a minute."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert 0 <= seconds <= schedule.LONGEST_SLEEP
        self.now += seconds


def runs(entries, seconds, *, job_seconds=0.0, clock=None):
    clock = clock or Clock()
    start, seen = clock.now, []

    def run_job(job):
        seen.append((job.name, round(clock.now - start)))
        clock.now += job_seconds

    schedule.run(entries, run_job, clock=clock, sleep=clock.sleep, until=start + seconds)
    return seen


def test_each_job_runs_at_start_after_its_countdown_then_every_interval():
    entries = {
        "rollup": {"task": "metrics.rollup_recent_task", "schedule": 300},
        "alerts": {"task": "metrics.check_alerts_task", "schedule": 300, "options": {"countdown": 60}},
        "retention": {"task": "accounts.run_retention_job_task", "schedule": timedelta(hours=1), "args": ["purge-logs"]},
    }
    assert runs(entries, 700) == [
        ("rollup", 0),
        ("retention", 0),
        ("alerts", 60),
        ("rollup", 300),
        ("alerts", 360),
        ("rollup", 600),
        ("alerts", 660),
    ]


def test_a_job_that_fell_due_many_times_while_the_machine_slept_runs_once_then_keeps_its_grid():
    clock = Clock()
    seen = []

    def sleep(seconds):
        clock.sleep(seconds)
        if len(seen) == 1:
            clock.now += 7215  # the machine slept two hours (the clock is the wall's: it went on)

    def run_job(job):
        seen.append(round(clock.now - 1000))

    entries = {"drain": {"task": "metrics.drain_usage_spool_task", "schedule": 60}}
    schedule.run(entries, run_job, clock=clock, sleep=sleep, until=1000 + 7400)
    assert seen == [0, 7275, 7320, 7380]


def test_a_job_longer_than_its_interval_skips_the_times_it_overran():
    assert runs({"slow": {"task": "t", "schedule": 60}}, 300, job_seconds=90) == [("slow", 0), ("slow", 120), ("slow", 240)]


def test_an_overrun_does_not_put_the_alert_check_before_the_rollup_it_reads():
    entries = {
        "rollup": {"task": "metrics.rollup_recent_task", "schedule": 300},
        "alerts": {"task": "metrics.check_alerts_task", "schedule": 300, "options": {"countdown": 60}},
    }
    clock, seen, start = Clock(), [], 1000.0

    def run_job(job):
        seen.append((job.name, round(clock.now - start)))
        if len(seen) == 1:
            clock.now += 400  # the first rollup, on a large database, takes longer than its interval

    schedule.run(entries, run_job, clock=clock, sleep=clock.sleep, until=start + 1000)
    assert seen == [("rollup", 0), ("alerts", 400), ("rollup", 600), ("alerts", 660), ("rollup", 900), ("alerts", 960)]


@pytest.mark.parametrize("every", [crontab(minute=0), 0, -5, "300", True])
def test_only_intervals_run_here(every):
    with pytest.raises(ValueError, match="only a number of seconds or a timedelta"):
        schedule.jobs({"odd": {"task": "t", "schedule": every}}, 0)


def test_the_command_refuses_to_run_beside_a_broker(monkeypatch):
    from aura.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", False)
    with pytest.raises(CommandError, match="celery -A aura beat"):
        call_command("aura", "beat-embedded", "--once")


# The real command, as `make run` starts it: its own process on the embedded defaults.


def embedded(tmp_path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER", "EMAIL_URL")
    }
    return {**env, "AURA_DATA_DIR": str(tmp_path), "AURA_ENV_FILE": "/nonexistent/.env", "EMAIL_URL": "consolemail://"}


def manage(env, *args, check=True):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=check)


SEED = """
from decimal import Decimal
from django.utils import timezone
from accounts.models import User
from metrics.models import AlertSettings, HourlyRollup, UsageRecord
user = User.objects.get(email="demo@example.org")
AlertSettings.objects.create(user=user, monthly_budget_usd=Decimal("1"), thresholds=[50, 100])
UsageRecord.objects.create(request_id="req_demo_1", user=user, created=timezone.now(), model_requested="gpt-4o-mini",
    model_used="gpt-4o-mini", provider="openai", status=200, prompt_tokens=100, completion_tokens=50, cost_usd=Decimal("1.20"))
assert not HourlyRollup.objects.exists()
"""


@pytest.fixture
def demo(tmp_path):
    env = embedded(tmp_path)
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "aura", "user-create", "--email", "demo@example.org", "--password", "a long demo passphrase")
    manage(env, "shell", "-v", "0", "-c", SEED)
    return env


def test_once_runs_every_job_so_a_demo_budget_alert_is_emailed(demo):
    done = manage(demo, "aura", "beat-embedded", "--once")
    lines = done.stdout.splitlines()
    ran = [line.removesuffix(": ok") for line in lines if line.endswith(": ok")]
    assert sorted(ran) == sorted(settings.CELERY_BEAT_SCHEDULE)
    assert ran.index("rollup-usage") < ran.index("check-alerts")  # the check's countdown keeps beat's order
    # The rollup ran before the alert check, which found the account active and over its budget.
    assert "Subject: Your AURA spend reached 100% of your monthly budget" in done.stdout
    assert "To: demo@example.org" in done.stdout
    rolled = manage(demo, "shell", "-v", "0", "-c", "from metrics.models import HourlyRollup; print(HourlyRollup.objects.get().requests)")
    assert rolled.stdout.strip() == "1"
    again = manage(demo, "aura", "beat-embedded", "--once")
    assert "Subject:" not in again.stdout  # an alert is emailed once per period


def test_the_long_running_beat_runs_the_jobs_due_at_start_and_stops_on_a_signal(demo, tmp_path):
    log = tmp_path / "beat.log"
    with log.open("w") as sink:
        beat = subprocess.Popen(
            [sys.executable, "manage.py", "aura", "beat-embedded"], cwd=ROOT, env=demo, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "retention expire-exports removed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert beat.poll() is None  # still running: the next jobs are due later
    finally:
        beat.send_signal(signal.SIGINT)  # Ctrl-C
        beat.wait(timeout=30)
    output = log.read_text()
    assert f"running {len(settings.CELERY_BEAT_SCHEDULE)} scheduled jobs in this process (no broker)" in output
    assert "retention purge-logs removed" in output and "retention expire-exports removed" in output
    assert beat.returncode == 0 and "Traceback" not in output
