"""Privacy policy §8 in a real browser: what the cookie and localStorage hold, and tabs that follow a sign-out."""

import re
from urllib.parse import urlsplit

import jwt
import pytest
from playwright.sync_api import expect

from tests.conftest import make_user

from .conftest import log_in, log_out

DASHBOARD = re.compile(r"/dashboard/$")


@pytest.fixture
def dana(transactional_db):
    return make_user("dana@example.org", "Dana")


def local_storage(page):
    return page.evaluate("Object.fromEntries(Object.entries(localStorage))")


def test_local_storage_holds_the_theme_the_language_and_a_session_tag(page, dana):
    log_in(page, "dana@example.org")
    expect(page).to_have_url(DASHBOARD)
    with page.expect_response(lambda response: urlsplit(response.url).path == "/theme/"):
        page.locator("[data-theme-toggle]").click()
    tag = page.locator('meta[name="aura-session"]').get_attribute("content")
    assert re.fullmatch(r"[0-9a-f]{32}", tag)
    assert local_storage(page) == {"aura-theme": "dark", "aura-language": "en", "aura-session": tag}

    [cookie] = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert jwt.get_unverified_header(cookie["value"]) == {"alg": "HS256", "typ": "JWT"}
    assert "sessionid" not in page.evaluate("document.cookie")  # out of scripts' reach
    assert tag not in cookie["value"]

    log_out(page)
    # The signed-out page's script removes the tag once it runs, which may be just after its links
    # show. (Polled from here: wait_for_function would evaluate a string, which the page's CSP forbids.)
    for _ in range(100):
        if "aura-session" not in local_storage(page):
            break
        page.wait_for_timeout(50)
    assert local_storage(page) == {"aura-theme": "dark", "aura-language": "en"}


def test_logging_out_in_one_tab_sends_the_other_to_the_login_page(new_context, dana):
    context = new_context()
    first = context.new_page()
    log_in(first, "dana@example.org")
    expect(first).to_have_url(DASHBOARD)
    second = context.new_page()
    second.goto("/settings/")
    expect(second.get_by_role("heading", level=1)).to_be_visible()

    log_out(first)
    expect(second).to_have_url(re.compile(r"/login/\?next=/settings/$"))
    expect(second.locator("header").get_by_role("link", name="Log in")).to_be_visible()


def test_a_visitors_language_stays_in_the_browser_and_follows_them_from_page_to_page(page, transactional_db):
    page.goto("/login/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Русский").click()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.get_by_role("heading", level=1)).to_have_text("Вход в AURA")
    assert local_storage(page) == {"aura-language": "ru"}

    link = page.locator("main").get_by_role("link", name="Создать аккаунт")
    expect(link).to_have_attribute("href", "/signup/?lang=ru")  # the link carries the choice: no second load
    link.click()
    expect(page).to_have_url(re.compile(r"/signup/\?lang=ru$"))
    expect(page.locator("html")).to_have_attribute("lang", "ru")

    page.goto("/pricing/")  # an address typed without it: the page loads again in the stored language
    expect(page).to_have_url(re.compile(r"/pricing/\?lang=ru$"))
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    assert {cookie["name"] for cookie in page.context.cookies()} <= {"csrftoken"}  # no language cookie

    page.locator("header").get_by_role("link", name="Войти").click()
    page.fill("input[name=username]", "nobody@example.org")
    page.fill("input[name=password]", "not-the-password")
    page.locator("main").get_by_role("button").click()  # the form's answer, in Russian, is not loaded again
    expect(page.locator(".form-errors, .errorlist").first).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
