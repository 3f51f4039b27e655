"""CSV export of the filtered request log."""

import csv
import io
from decimal import Decimal

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


def test_money_is_written_as_people_read_it(alice_client, alice):
    record(alice, cost_usd=Decimal("0"), baseline_cost_usd=Decimal("0"))  # a response-cache hit costs nothing
    exported = rows(alice_client.get("/usage/export.csv"))[0]
    assert exported["cost_usd"] == exported["savings_usd"] == "0.00000000"  # not 0E-8


def test_the_data_exports_files_write_money_the_same_way():
    from accounts.exports import as_csv, as_json

    assert as_csv([{"cost_usd": Decimal("0E-8")}], ["cost_usd"]).splitlines() == ["cost_usd", "0.00000000"]
    assert as_json({"cost_usd": Decimal("0E-8")}) == '{\n  "cost_usd": "0.00000000"\n}'
