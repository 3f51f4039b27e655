"""The charts in a real browser: drawn under the Content-Security-Policy, in each theme's colours."""

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.conftest import make_user
from tests.e2e import conftest as e2e

from .conftest import hour_now, record

# The e2e package's browser fixtures: Chromium and a live server that serves the collected static files.
browser, live_server, new_context = e2e.browser, e2e.live_server, e2e.new_context
log_in = e2e.log_in

ACCENT = {"light": "#4f3fd0", "dark": "#a99cff"}


@pytest.fixture
def dana(transactional_db):
    user = make_user("dana@example.org", "Dana")
    for hours in range(0, 24 * 8, 5):
        record(user, at=hour_now() - timedelta(hours=hours), status=502 if hours % 4 == 0 else 200)
    return user


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_chart_is_drawn_in_the_themes_colours(new_context, dana, theme):
    context = new_context()
    context.add_init_script(f'localStorage.setItem("aura-theme", "{theme}");')
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    log_in(page, "dana@example.org")
    page.goto("/dashboard/charts/?range=7d")
    expect(page.locator("canvas")).to_have_count(7)
    drawn = page.evaluate("Array.from(document.querySelectorAll('canvas')).map(c => Boolean(window.Chart.getChart(c)))")
    assert drawn == [True] * 7
    colour = page.evaluate("window.Chart.getChart(document.getElementById('chart-cost')).data.datasets[0].borderColor")
    assert colour == ACCENT[theme]
    assert errors == []  # no Content-Security-Policy violation, no script error


def test_switching_the_theme_redraws_the_charts(new_context, dana):
    page = new_context().new_page()
    log_in(page, "dana@example.org")
    page.goto("/dashboard/")
    page.locator("[data-theme-toggle]").click()
    theme = page.evaluate("document.documentElement.getAttribute('data-theme')")
    colour = page.evaluate("window.Chart.getChart(document.getElementById('chart-cost')).data.datasets[0].borderColor")
    assert colour == ACCENT[theme]


def test_each_chart_has_its_numbers_as_a_table(new_context, dana):
    page = new_context().new_page()
    log_in(page, "dana@example.org")
    page.goto("/dashboard/charts/?range=24h")
    page.get_by_text("Requests and errors as a table").click()
    expect(page.locator("details[open] table tbody tr")).to_have_count(24)
