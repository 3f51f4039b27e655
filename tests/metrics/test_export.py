"""CSV export of the filtered request log."""

import csv
import io

from .conftest import record


def rows(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_export_holds_the_filtered_calls(alice_client, alice, alice_api_key):
    record(alice, key=alice_api_key, status=502, error_class="upstream_error")
    record(alice, key=alice_api_key)
    response = alice_client.get("/usage/export.csv?status=error")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="aura-usage-')
    exported = rows(response)
    assert len(exported) == 1
    assert exported[0]["key"] == "backend" and exported[0]["status"] == "502" and exported[0]["error_class"] == "upstream_error"
    assert exported[0]["cost_usd"] == "0.00100000" and exported[0]["savings_usd"] == "0.00200000"
    assert exported[0]["time_utc"].endswith("Z")


def test_the_export_is_only_the_accounts_own(alice_client, alice, bob):
    record(bob)
    record(alice)
    assert len(rows(alice_client.get("/usage/export.csv"))) == 1


def test_formula_like_cells_are_neutralised(alice_client, alice):
    record(alice, model='=HYPERLINK("http://evil.example")')
    assert rows(alice_client.get("/usage/export.csv"))[0]["model_requested"].startswith("'=")


def test_bad_filters_are_a_400_not_a_file(alice_client, alice):
    assert alice_client.get("/usage/export.csv?from=2026-99-01").status_code == 400


def test_the_export_needs_a_login(client):
    assert client.get("/usage/export.csv").status_code == 302
