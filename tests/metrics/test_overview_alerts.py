"""The overview's "Needs attention": the month's alerts, with their times."""

from django.utils import timezone

from metrics.models import Alert

from .conftest import record


def test_an_alerts_time_says_it_is_utc(alice_client, alice):
    record(alice)
    alert = Alert.objects.create(user=alice, kind="plan_limit", period="2026-11", details={"threshold": 80, "used": 8000, "limit": 10000})
    page = alice_client.get("/dashboard/").content.decode()
    assert f'<time class="muted" datetime="{alert.created.isoformat()}">{timezone.localtime(alert.created):%-d %b %H:%M} UTC</time>' in page
