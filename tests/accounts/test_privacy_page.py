"""Settings → Privacy: what the page lists."""

from accounts.models import DataExport


def test_an_exports_time_says_it_is_utc(alice_client, alice):
    export = DataExport.objects.create(user=alice, status=DataExport.READY, size=1000)
    page = alice_client.get("/settings/privacy/").content.decode()
    assert f'<li><time datetime="{export.created.isoformat()}">{export.created:%Y-%m-%d %H:%M} UTC</time> —' in page
