"""The rollup and alert tasks on a real Celery worker (skipped when tasks run eagerly)."""

import time
from decimal import Decimal

import pytest

from metrics.models import Alert, AlertSettings, HourlyRollup
from metrics.tasks import check_alerts_task, rollup_recent_task

from .conftest import record


def wait_for(condition, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_rollups_then_alerts_run_on_the_worker(transactional_db, celery_worker, alice):
    if celery_worker is None:
        pytest.skip("no broker: tasks run eagerly, there is no worker to test")
    AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("1"), thresholds=[100])
    for _ in range(3):
        record(alice, cost_usd=Decimal("0.50"))
    rollup_recent_task.delay()
    assert wait_for(lambda: HourlyRollup.objects.filter(user=alice, requests=3).exists())
    check_alerts_task.delay()
    assert wait_for(lambda: Alert.objects.filter(user=alice, kind="budget", email="sent").exists())
    assert Alert.objects.get(user=alice).sent_to == ["alice@example.org"]
