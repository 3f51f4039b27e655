"""The Celery worker logs through Django's LOGGING: key-shaped text is masked and exception messages
withheld there too (Celery would otherwise replace the root logger's handlers with its own)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from metrics.tasks import check_user_alerts_task

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-proj-" + "WORKERlogMUSTnotHOLDthis" * 2
QUEUE = "worker-log-test"  # of its own: the suite's session worker does not take from it


@pytest.mark.skipif(settings.CELERY_TASK_ALWAYS_EAGER, reason="a worker needs a broker (REDIS_URL)")
def test_a_task_failing_on_a_secret_value_leaves_it_out_of_the_workers_log(transactional_db, tmp_path):
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "AURA_ENV_FILE": "/nonexistent/.env",
    }
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "aura", "worker", "--queues", QUEUE, "--pool", "threads", "--concurrency", "1"]
    with log.open("w") as sink:
        # The Procfile's worker, at its log level.
        worker = subprocess.Popen(
            [*command, "--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while " ready." not in log.read_text() and time.monotonic() < deadline:
                assert worker.poll() is None, log.read_text()
                time.sleep(0.2)
            check_user_alerts_task.apply_async((SECRET,), queue=QUEUE)  # not an id: Django's ValueError quotes it
            while "raised unexpected" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    output = log.read_text()
    assert "Task metrics.check_user_alerts_task" in output and "raised unexpected: ValueError(" in output and "[redacted]" in output
    assert "ValueError (message withheld)" in output
    assert SECRET not in output and "WORKERlogMUST" not in output
