"""A real browser (Debian's Chromium, driven by Playwright) against pytest-django's live server.

The browser lives for the e2e package only: while Playwright's sync API runs, its event loop
counts as running in the main thread, which Django's ORM refuses without
DJANGO_ALLOW_ASYNC_UNSAFE — so that is set for exactly that long, and the tests after this
package see neither.
"""

import os
import re
import time
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect, sync_playwright

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

expect.set_options(timeout=15_000)


@pytest.fixture(scope="package")
def live_server():
    """pytest-django's live server, serving static files as production does: through WhiteNoise.

    pytest-django's own fixture puts Django's finder-based StaticFilesHandler in front, which
    knows only the source names (``css/aura.css``), not the hashed ones the manifest storage
    renders into pages, so every stylesheet and script would be a 404. Here /static/ reaches
    the app, whose WhiteNoise middleware serves ``STATIC_ROOT`` (``make test`` collects it).
    """
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer(os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost", start=False)
    server.thread.static_handler = lambda application: application
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"The e2e tests need Chromium at {CHROMIUM}: install it with `apt-get install chromium` (.ci/run does).")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_context(browser, live_server):
    """Open fresh browser contexts (own cookies and storage) on the live server; all closed after the test."""
    contexts = []
    # Anything but the live server (Paddle.js, say) is refused: the tests never touch the network.
    outside = re.compile(rf"^(?!{re.escape(live_server.url)}(?:[/?#]|$))[a-z-]+://")

    def open_context(**options):
        defaults = {"viewport": {"width": 1280, "height": 900}, "locale": "en-US", "color_scheme": "light"}
        context = browser.new_context(base_url=live_server.url, accept_downloads=True, **{**defaults, **options})
        context.set_default_timeout(15_000)
        context.route(outside, lambda route: route.abort())
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    return new_context().new_page()


def log_in(page, email, password=PASSWORD):
    page.goto("/login/")
    form = page.locator("main form")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()


def log_out(page):
    page.locator("header").get_by_role("button", name="Log out").click()
    expect(page.locator("header").get_by_role("link", name="Log in")).to_be_visible()


def email_to(address, subject_contains="", timeout=10):
    """The newest email to ``address``: sent by the live server's thread into this process's outbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(mail.outbox):
            if address in message.to and subject_contains in message.subject:
                return message
        time.sleep(0.05)
    raise AssertionError(f"no email to {address} (outbox: {[(m.to, m.subject) for m in mail.outbox]})")
