"""The cabinet's layout in a real browser: on a phone and a laptop, with ordinary and with long values."""

import re

import pytest
from playwright.sync_api import expect

from gateway import services
from tests.conftest import make_user, wire
from tests.metrics.conftest import record

from .conftest import log_in

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}
LONG_NAME = "nightly_batch_summariser_for_the_customer_support_archive_of_the_eu_region_00001"


@pytest.fixture
def dana(transactional_db, upstream):
    dana = make_user("dana@example.org", "Dana")
    wire(dana, upstream, providers=("openai", "anthropic"))
    return dana


@pytest.fixture
def long_values(dana, upstream):
    """An 80-character key name, a 300-character base URL and a 40-character label, each the most the field holds."""
    base_url = f"{upstream.url}/v1/"
    base_url += "x" * (300 - len(base_url))
    services.provider_key_save(user=dana, provider="custom", api_key="sk-custom-0123456789", base_url=base_url, label="l" * 40)
    key, _secret = services.api_key_issue(user=dana, name=LONG_NAME)
    record(dana, key=key)
    return key


def open_as(new_context, viewport, email="dana@example.org"):
    page = new_context(viewport=viewport).new_page()
    log_in(page, email)
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    return page


def page_width(page, path):
    page.goto(path)
    return page.evaluate("document.documentElement.scrollWidth")


def right_edge(locator):
    return locator.evaluate("element => element.getBoundingClientRect().right")


def test_on_a_phone_the_tables_scroll_inside_their_card_not_the_page(new_context, dana):
    page = open_as(new_context, PHONE)
    for path in ("/keys/", "/providers/", "/usage/", "/dashboard/"):
        assert page_width(page, path) <= PHONE["width"], path


def test_long_names_and_urls_keep_every_page_to_the_screen(new_context, long_values):
    for viewport in (PHONE, LAPTOP):
        page = open_as(new_context, viewport)
        for path in ("/keys/", "/providers/", "/usage/", f"/keys/{long_values.pk}/"):
            assert page_width(page, path) <= viewport["width"], (viewport, path)


def test_a_long_value_is_cut_with_its_whole_text_in_a_title(new_context, long_values):
    page = open_as(new_context, LAPTOP)
    page.goto("/keys/")
    row = page.get_by_role("row").filter(has_text="nightly_batch")
    name = row.get_by_role("link")
    expect(name).to_have_attribute("title", LONG_NAME)
    table = page.locator(".table-wrap").filter(has=row)
    assert right_edge(row.get_by_role("button", name="Revoke")) <= right_edge(table)  # Status and Revoke stay in view

    page.goto("/providers/")
    base_url = long_values.user.provider_keys.get(provider="custom").base_url
    row = page.get_by_role("row").filter(has_text="OpenAI-compatible")
    expect(row.get_by_title(base_url)).to_have_text(base_url)
    assert right_edge(row.get_by_title(base_url)) < right_edge(page.locator(".table-wrap"))

    page.goto("/usage/")
    table = page.locator(".table-wrap")
    status = page.locator("main table tbody tr").first.locator("td").nth(5)
    expect(status).to_have_text("200")
    assert right_edge(status) <= right_edge(table)  # the columns after the model's stay in view


def test_on_a_laptop_the_provider_keys_table_fits_its_card(new_context, dana, upstream):
    wire(dana, upstream, providers=("gemini", "custom"))
    page = open_as(new_context, LAPTOP)
    page.goto("/providers/")
    table = page.locator(".table-wrap")
    for delete in page.get_by_role("button", name="Delete").all():
        assert right_edge(delete) <= right_edge(table)


def test_a_long_key_name_wraps_in_the_heading(new_context, long_values):
    page = open_as(new_context, PHONE)
    page.goto(f"/keys/{long_values.pk}/")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(LONG_NAME)
    assert heading.evaluate("h1 => h1.scrollWidth <= h1.clientWidth")  # wrapped, not overflowing its box


def test_the_russian_header_is_one_row_on_a_laptop_and_scrolls_on_a_phone(new_context, transactional_db):
    make_user("olga@example.org", "Olga", language="ru")
    page = open_as(new_context, LAPTOP, "olga@example.org")
    links = page.locator("header nav a")
    expect(links.first).to_have_text("Сводка")
    tops = {round(link.bounding_box()["y"]) for link in links.all()}
    assert len(tops) == 1, "the header's links wrap onto a second row"

    page = open_as(new_context, PHONE, "olga@example.org")
    nav = page.locator("header nav")
    assert nav.evaluate("nav => nav.scrollWidth > nav.clientWidth")  # more links than fit: they scroll
    assert nav.evaluate("nav => getComputedStyle(nav).overflowX") == "auto"
    heights = {round(link.bounding_box()["height"]) for link in page.locator("header nav a").all()}
    assert len(heights) == 1, "a link's name wraps inside the scrolling row"
    assert "radial-gradient" in nav.evaluate("nav => getComputedStyle(nav).backgroundImage")  # the edge shadow hinting at more
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
