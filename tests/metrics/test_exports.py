"""Metrics' part of the GDPR export: usage, daily rollups, alert settings and alerts."""

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

from metrics import exports, services
from metrics.models import Alert, AlertSettings, KeyBudget

from .conftest import hour_now, record


def test_the_export_holds_daily_usage_and_alerts(alice, bob, alice_api_key):
    record(alice, key=alice_api_key, at=hour_now() - timedelta(hours=2))
    record(bob, at=hour_now() - timedelta(hours=2))
    services.rollups_refresh(now=hour_now() + timedelta(minutes=1))
    AlertSettings.objects.create(user=alice, monthly_budget_usd=Decimal("20"), recipients="ops@example.org")
    KeyBudget.objects.create(api_key=alice_api_key, monthly_budget_usd=Decimal("5"))
    Alert.objects.create(user=alice, kind="budget", period="2026-11:50:20", details={"threshold": 50})
    files = exports.collect(alice)
    (day,) = csv.DictReader(io.StringIO(files["usage_daily.csv"][1]))
    assert day["requests"] == "1" and day["api_key_id"] == str(alice_api_key.pk)
    alerts = json.loads(files["alerts.json"][1])
    assert alerts["settings"]["recipients"] == "ops@example.org" and alerts["key_budgets"][0]["name"] == "backend"
    assert [a["kind"] for a in alerts["alerts"]] == ["budget"]


def test_an_account_without_alert_settings_exports_none(alice):
    assert json.loads(exports.collect(alice)["alerts.json"][1])["settings"] is None
