"""The in-cabinet list of past alerts."""

from metrics.models import Alert


def test_the_list_shows_the_accounts_alerts(alice_client, alice, bob):
    Alert.objects.create(user=alice, kind="plan_limit", period="2026-11:80", details={"threshold": 80, "used": 8000, "limit": 10000})
    Alert.objects.create(user=bob, kind="plan_limit", period="2026-11:80", details={"threshold": 80, "used": 1, "limit": 2})
    page = alice_client.get("/notifications/").content.decode()
    assert "You reached 80% of your plan's monthly requests: 8,000 of 10,000." in page
    assert page.count('data-alert="plan_limit"') == 1


def test_an_episode_says_when_it_began_and_how_long_it_lasted(alice_client, alice):
    Alert.objects.create(
        user=alice,
        kind="usage_spike",
        period="2026-11-27T10",
        last_hour="2026-11-27T12:00:00Z",
        details={"hour": "2026-11-27T10:00:00+00:00", "requests": 900, "usual_requests": 40, "cost": 3.5, "usual_cost": 0.2},
    )
    page = alice_client.get("/notifications/").content.decode()
    assert "Unusual usage from 27 Nov 10:00 UTC: 900 requests in the hour (usually 40)" in page
    assert "Lasted until the hour from 27 Nov 12:00 UTC." in page


def test_no_alerts_yet(alice_client):
    assert "No alerts yet." in alice_client.get("/notifications/").content.decode()
