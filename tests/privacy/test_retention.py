"""Each retention job against real rows on both sides of its boundary."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import DataExport, LoginEvent, RetentionRun, User
from accounts.retention import run
from gateway import services
from gateway.models import DataKey, ProviderKey
from metrics.models import AnonymousAggregate, UsageRecord

NOW = timezone.now()


def usage(user, days_ago, **fields):
    return UsageRecord.objects.create(
        request_id=f"req_{user.pk}_{days_ago}_{UsageRecord.objects.count()}",
        user=user,
        model_requested="gpt-4o-mini",
        model_used="gpt-4o-mini",
        provider="openai",
        status=200,
        created=NOW - timedelta(days=days_ago),
        prompt_tokens=100,
        completion_tokens=10,
        **fields,
    )


def test_purge_logs_keeps_13_days_and_drops_15(alice):
    keep, drop = usage(alice, 13), usage(alice, 15)
    LoginEvent.objects.create(user=alice, succeeded=True, created=NOW - timedelta(days=13))
    LoginEvent.objects.create(user=alice, succeeded=True, created=NOW - timedelta(days=15))
    audit, more = run("purge-logs")
    assert list(UsageRecord.objects.values_list("pk", flat=True)) == [keep.pk]
    assert LoginEvent.objects.count() == 1 and not more
    assert audit.removed["usage_records"] == 1 and audit.removed["login_events"] == 1
    assert drop.pk not in UsageRecord.objects.values_list("pk", flat=True)


def test_purge_logs_removes_expired_sessions_and_the_browsers_listed_for_them(client, alice):
    from django.contrib.sessions.models import Session

    from accounts.models import UserSession
    from tests.conftest import PASSWORD

    client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
    live = UserSession.objects.get(user=alice)
    gone = UserSession.objects.create(user=alice, session_key="x" * 32, ip="203.0.113.9", device="Firefox on Linux")
    expired = Session.objects.create(session_key="y" * 32, session_data="", expire_date=NOW - timedelta(minutes=1))
    UserSession.objects.create(user=alice, session_key=expired.session_key, ip="203.0.113.10")
    audit, _ = run("purge-logs")
    assert list(UserSession.objects.values_list("pk", flat=True)) == [live.pk]  # the live one stays listed
    assert not Session.objects.filter(pk=expired.pk).exists() and not UserSession.objects.filter(pk=gone.pk).exists()
    assert audit.removed["sessions"] == 1 and audit.removed["browser_sessions"] == 2
    assert client.get("/settings/").status_code == 200  # still signed in
    page = client.get("/settings/privacy/").content.decode()
    assert "Signed-in browsers: session, IP address, device, last seen" in page  # the page says so


def test_purge_logs_removes_old_log_files(db, settings, tmp_path):
    import os

    settings.LOG_DIR = str(tmp_path)
    old, fresh = tmp_path / "aura.log.2026-11-01", tmp_path / "aura.log"
    old.write_text("x")
    fresh.write_text("y")
    fifteen_days = (NOW - timedelta(days=15)).timestamp()
    os.utime(old, (fifteen_days, fifteen_days))
    audit, _ = run("purge-logs")
    assert not old.exists() and fresh.exists() and audit.removed["log_files"] == 1


def test_erase_accounts_after_30_days_only(alice, bob, charlie):
    User.objects.filter(pk=alice.pk).update(deletion_requested_at=NOW - timedelta(days=29))
    User.objects.filter(pk=bob.pk).update(deletion_requested_at=NOW - timedelta(days=31))
    usage(bob, 1)
    audit, _ = run("erase-accounts")
    assert set(User.objects.values_list("email", flat=True)) == {"alice@example.org", "charlie@example.org"}
    assert not UsageRecord.objects.filter(user_id=bob.pk).exists()
    assert audit.account_ids == [bob.pk] and audit.removed == {"accounts": 1, "refused_usage_records": 0}


def test_shred_keys_removes_rows_of_accounts_awaiting_deletion(alice, bob):
    services.provider_key_save(user=alice, provider="openai", api_key="sk-alice-0000000000")
    services.provider_key_save(user=bob, provider="openai", api_key="sk-bobby-0000000000")
    User.objects.filter(pk=alice.pk).update(deletion_requested_at=NOW)
    run("shred-keys")
    assert list(ProviderKey.objects.values_list("user_id", flat=True)) == [bob.pk]
    assert list(DataKey.objects.values_list("user_id", flat=True)) == [bob.pk]


def test_anonymise_folds_without_user_link_and_leaves_out_restricted_accounts(alice, bob, charlie):
    usage(alice, 2)
    usage(alice, 2)
    usage(bob, 2)
    User.objects.filter(pk=charlie.pk).update(objected_at=NOW)
    usage(charlie, 2)
    run("anonymise-usage")
    run("anonymise-usage")  # idempotent
    [row] = AnonymousAggregate.objects.all()
    assert row.requests == 3 and row.prompt_tokens == 300
    assert {f.name for f in AnonymousAggregate._meta.get_fields()}.isdisjoint({"user", "user_id", "api_key", "ip"})


def test_anonymised_aggregates_live_12_months(db):
    today = NOW.date()
    AnonymousAggregate.objects.create(day=today - timedelta(days=11 * 31), provider="openai", model="m")
    AnonymousAggregate.objects.create(day=today - timedelta(days=13 * 31), provider="openai", model="m")
    run("anonymise-usage")
    assert list(AnonymousAggregate.objects.values_list("day", flat=True)) == [today - timedelta(days=11 * 31)]


def test_exports_expire_after_7_days(alice, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    (tmp_path / "exports").mkdir()
    fresh = DataExport.objects.create(user=alice, status="ready", created=NOW - timedelta(days=6))
    stale = DataExport.objects.create(user=alice, status="ready", created=NOW - timedelta(days=8))
    (tmp_path / "exports" / f"{stale.pk}.zip").write_bytes(b"zip")
    run("expire-exports")
    assert list(DataExport.objects.all()) == [fresh]
    assert not (tmp_path / "exports" / f"{stale.pk}.zip").exists()


def test_run_job_from_the_command_line(alice):
    usage(alice, 20)
    out = StringIO()
    call_command("aura", "run-job", "purge-logs", stdout=out)
    assert '"usage_records": 1' in out.getvalue()
    assert RetentionRun.objects.get().job == "purge-logs"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED needs PostgreSQL")
def test_two_runs_at_once_remove_each_row_once(transactional_db, alice, monkeypatch):
    from accounts import retention

    monkeypatch.setattr(retention, "BATCH", 50)
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(request_id=f"old_{i}", user=alice, model_requested="m", status=200, created=NOW - timedelta(days=20))
            for i in range(400)
        ]
    )
    totals = []

    def worker():
        from django.db import connection as conn

        removed, more = 0, True
        while more:
            audit, more = run("purge-logs")
            removed += audit.removed["usage_records"]
        totals.append(removed)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(totals) == 400 and not UsageRecord.objects.exists()


def test_without_a_broker_a_long_backlog_runs_batch_after_batch_not_nested(alice, monkeypatch):
    """Eagerly (the embedded defaults) each re-queued batch used to run inside the one before it."""
    import sys

    from accounts import retention
    from accounts.tasks import run_retention_job_task
    from aura.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", True)
    monkeypatch.setattr(retention, "BATCH", 1)
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(request_id=f"old_{i}", user=alice, model_requested="m", status=200, created=NOW - timedelta(days=20))
            for i in range(300)
        ]
    )
    depths, real_run = [], retention.run

    def measured(*args, **kwargs):
        frame, depth = sys._getframe(), 0
        while frame:
            frame, depth = frame.f_back, depth + 1
        depths.append(depth)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(retention, "run", measured)
    run_retention_job_task.delay("purge-logs")
    assert not UsageRecord.objects.exists()
    assert len(depths) == 301  # the last batch comes back short
    assert max(depths) - min(depths) < 30, (min(depths), max(depths))  # the second a few frames deeper, then no deeper
