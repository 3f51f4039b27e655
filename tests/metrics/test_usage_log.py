"""The request log: every call of the last 14 days, filterable, 50 to a page, never content."""

import re
from datetime import timedelta

from .conftest import hour_now, record


def test_the_log_shows_each_calls_numbers(alice_client, alice, alice_api_key):
    record(alice, key=alice_api_key, route_reason="auto:cheapest-capable", cache_status="hit", latency_ms=321)
    page = alice_client.get("/usage/").content.decode()
    shown = (
        "backend",
        "gpt-4o-mini",
        "openai",
        "100 / 20 / 50",
        "$0.001000",
        "$0.002000",
        "321 ms",
        "auto:cheapest-capable",
        "203.0.113.7",
    )
    assert all(value in page for value in shown)


def test_it_pages_by_50_newest_first(alice_client, alice):
    for minutes in range(60):
        record(alice, at=hour_now() - timedelta(minutes=minutes), model=f"model-{minutes}")
    first = alice_client.get("/usage/").context["page"]
    assert len(first.object_list) == 50 and first.object_list[0].model_used == "model-0"
    assert len(alice_client.get("/usage/?page=2").context["page"].object_list) == 10


def test_a_bad_page_number_shows_a_page_anyway(alice_client, alice):
    record(alice)
    assert alice_client.get("/usage/?page=zzz").status_code == 200
    assert alice_client.get("/usage/?page=99").status_code == 200


def test_filters_combine(alice_client, alice, alice_api_key):
    record(alice, key=alice_api_key, status=502, error_class="upstream_error")
    record(alice, key=alice_api_key)
    record(alice, model="claude-haiku-4-5", provider="anthropic", status=500)
    assert alice_client.get("/usage/?status=error").context["page"].paginator.count == 2
    assert alice_client.get(f"/usage/?status=error&key={alice_api_key.pk}").context["page"].paginator.count == 1
    assert alice_client.get("/usage/?provider=anthropic").context["page"].paginator.count == 1
    assert alice_client.get("/usage/?model=gpt-4o-mini&status=ok").context["page"].paginator.count == 1


def test_dates_are_whole_utc_days(alice_client, alice):
    record(alice, at=hour_now() - timedelta(days=3))
    record(alice)
    day = (hour_now() - timedelta(days=3)).date()
    assert alice_client.get(f"/usage/?from={day}&to={day}").context["page"].paginator.count == 1


def test_bad_filters_are_a_400_listing_everything(alice_client, alice):
    record(alice)
    response = alice_client.get("/usage/?status=maybe&from=not-a-date")
    assert response.status_code == 400 and response.context["page"].paginator.count == 1


def test_only_the_accounts_own_calls_are_listed(alice_client, alice, bob):
    record(bob, model="bobs-model")
    assert "bobs-model" not in alice_client.get("/usage/").content.decode()


def test_another_accounts_key_is_a_404(alice_client, bob_api_key):
    assert alice_client.get(f"/usage/?key={bob_api_key.pk}").status_code == 404
    assert alice_client.get(f"/usage/export.csv?key={bob_api_key.pk}").status_code == 404


def test_a_bad_filter_keeps_what_was_typed_and_marks_the_field(alice_client, alice):
    record(alice)
    start, end = hour_now().date(), hour_now().date() - timedelta(days=19)
    response = alice_client.get(f"/usage/?from={start}&to={end}&status=error")
    assert response.status_code == 400 and response.context["page"].paginator.count == 1  # the default view underneath
    page = response.content.decode()
    assert '<option value="error" selected>' in page and f'value="{start}"' in page
    assert re.search(rf'<input[^>]*name="to"[^>]*value="{end}"[^>]*aria-invalid="true"[^>]*aria-describedby="id_to_error"', page)
    assert re.search(r'id="id_to_error"><p class="field-error">The end date is before the start date.</p>', page)


def test_codes_are_named_in_the_accounts_language_with_the_code_in_a_title(client, alice, bob):
    for user in (alice, bob):
        record(user, cache_status="hit", route_reason="auto:cheapest-capable")
        record(user, status=502, error_class="upstream_rejected", cache_status="bypass", route_reason="fallback:429")
    client.force_login(alice)
    page = client.get("/usage/").content.decode()
    for code, label in (
        ("hit", "Hit"),
        ("bypass", "Not used"),
        ("auto:cheapest-capable", "Auto: cheapest capable"),
        ("fallback:429", "Fallback: provider rate limit"),
        ("upstream_rejected", "502 Provider refused the call"),
    ):
        assert re.search(rf'title="{code}">{label}<', page), code
    client.force_login(bob)
    page = client.get("/usage/").content.decode()
    for label in (
        "Попадание",
        "Не использовался",
        "Авто: самая дешёвая подходящая",
        "Резервная: лимит провайдера",
        "502 Провайдер отклонил вызов",
    ):
        assert f">{label}<" in page, label


def test_a_client_that_left_is_not_a_failed_call(alice_client, alice):
    record(alice, status=499, error_class="client_disconnected")
    record(alice, status=502, error_class="upstream_rejected")
    assert alice_client.get("/usage/?status=error").context["page"].paginator.count == 1
    page = alice_client.get("/usage/").content.decode()
    assert re.search(r'<span class="badge" title="client_disconnected">499 ', page)  # neutral, not red
    assert re.search(r'<span class="badge bad" title="upstream_rejected">502 ', page)
    assert alice_client.get("/usage/").context["page"].paginator.count == 2
