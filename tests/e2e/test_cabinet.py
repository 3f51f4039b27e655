"""The cabinet in a real browser: what a user sees, from sign-up to leaving."""

import re
import zipfile
from urllib.parse import urlsplit

import pyotp
import pytest
from openai import OpenAI
from playwright.sync_api import expect

from tests.conftest import PASSWORD, make_user, wire

from .conftest import ARTIFACTS, email_to, log_in, log_out

DASHBOARD = re.compile(r"/dashboard/$")


@pytest.fixture
def dana(transactional_db):
    return make_user("dana@example.org", "Dana")


def test_signing_up_and_confirming_the_email_leads_to_a_greeting(page):
    page.goto("/signup/")
    form = page.locator("main form")
    form.get_by_label("Display name").fill("Erin")
    form.get_by_label("Email").fill("erin@example.org")
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Sign up").click()
    expect(page).to_have_url(DASHBOARD)
    expect(page.get_by_text("We sent a confirmation link to erin@example.org")).to_be_visible()
    expect(page.get_by_text("Confirm your email address erin@example.org")).to_be_visible()

    link = re.search(r"https?://\S+?/verify/[^/\s]+/", email_to("erin@example.org").body)
    assert link, "the verification email has no /verify/<token>/ link"
    log_out(page)
    page.goto(urlsplit(link.group()).path)
    expect(page).to_have_url(re.compile(r"/login/\?notice=email-confirmed$"))  # a notice in the address, no cookie
    expect(page.get_by_text("Your email address is confirmed. Log in to continue.")).to_be_visible()

    log_in(page, "erin@example.org")
    expect(page).to_have_url(DASHBOARD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Erin")
    expect(page.get_by_text("Confirm your email address")).to_have_count(0)


def test_a_provider_key_shows_masked_an_aura_key_shows_once_and_a_call_appears_in_usage(page, dana, upstream, live_server):
    log_in(page, "dana@example.org")
    page.goto("/providers/")
    form = page.locator("main form").filter(has=page.get_by_role("button", name="Save key"))
    form.get_by_label("Provider").select_option("openai")
    form.get_by_label("API key").fill("sk-e2e-secret-1234")
    form.get_by_label("Base URL (optional)").fill(f"{upstream.url}/v1")
    form.get_by_role("button", name="Save key").click()
    expect(page.get_by_text("The OpenAI key ending in 1234 is saved and the provider accepted it.")).to_be_visible()
    row = page.locator("table tbody tr").filter(has_text="OpenAI")
    expect(row.locator("code")).to_have_text(re.compile(r"^•+1234$"))
    expect(row).to_contain_text("Accepted")
    assert "sk-e2e-secret-1234" not in page.content()

    page.goto("/keys/")
    page.locator("main form").get_by_label("Name").fill("e2e")
    page.get_by_role("button", name="Issue key").click()
    secret_field = page.get_by_role("textbox", name="Your new key")
    expect(secret_field).to_have_value(re.compile(r"^aura_\S{43}$"))
    secret = secret_field.input_value()
    expect(page.locator("table tbody tr").filter(has_text="e2e")).to_contain_text("Active")
    # Coming back to the page (not reloading: that re-posts the form and issues another key).
    page.goto("/keys/")
    expect(page.get_by_role("textbox", name="Your new key")).to_have_count(0)
    expect(page.locator("table tbody tr")).to_have_count(1)
    assert secret not in page.content()

    page.goto("/dashboard/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Dana")
    expect(page.get_by_role("region", name="Requests")).to_have_count(0)  # no usage yet: the getting-started page

    client = OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=20)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello from a browser test"}])
    assert answer.choices[0].message.content == "Mock reply to 1 messages."

    page.goto("/dashboard/")
    expect(page.get_by_role("region", name="Requests")).to_contain_text(re.compile(r"^\s*Requests\s+1\b"))
    expect(page.get_by_role("region", name="Spend by AURA key").get_by_role("row", name=re.compile(r"^e2e\b"))).to_contain_text("1")
    page.locator("header nav").get_by_role("link", name="Usage").click()
    expect(page).to_have_url(re.compile(r"/usage/$"))
    expect(page.get_by_role("heading", name="1 call", exact=True)).to_be_visible()
    call = page.locator("main table tbody tr")
    expect(call).to_have_count(1)
    for shown in ("e2e", "gpt-4o-mini", "openai", "200"):
        expect(call).to_contain_text(shown)


def test_two_factor_login_takes_a_code_or_a_recovery_code(page, dana):
    log_in(page, "dana@example.org")
    expect(page).to_have_url(DASHBOARD)
    page.goto("/settings/2fa/")
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.locator("main code").inner_text().strip()
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from your authenticator app").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.locator("ul.codes code")
    expect(codes).to_have_count(10)
    recovery_code = codes.first.inner_text()
    page.get_by_role("link", name="I have saved them").click()

    log_out(page)
    log_in(page, "dana@example.org")
    expect(page).to_have_url(re.compile(r"/login/2fa/$"))
    expect(page.get_by_role("heading", name="One more step")).to_be_visible()
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(totp.now())
    page.locator("main form").get_by_role("button", name="Log in").click()
    expect(page).to_have_url(DASHBOARD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Dana")

    log_out(page)
    log_in(page, "dana@example.org")
    expect(page).to_have_url(re.compile(r"/login/2fa/$"))
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(recovery_code)
    page.locator("main form").get_by_role("button", name="Log in").click()
    expect(page).to_have_url(DASHBOARD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Dana")


# Runs before any page script: what the theme is when the document is parsed, before first paint.
RECORD_THEME_AT_PARSE = """
document.addEventListener("DOMContentLoaded", () => {
  window.__themeAtParse = document.documentElement.getAttribute("data-theme");
}, {once: true});
"""


def test_the_chosen_theme_and_language_stick_without_a_flash(page, dana):
    page.add_init_script(RECORD_THEME_AT_PARSE)
    log_in(page, "dana@example.org")
    expect(page).to_have_url(DASHBOARD)
    html = page.locator("html")
    expect(html).to_have_attribute("data-theme", "light")  # the context prefers light

    toggle = page.locator("[data-theme-toggle]")
    with page.expect_response(lambda response: urlsplit(response.url).path == "/theme/") as saved:
        toggle.click()
    assert saved.value.ok
    expect(html).to_have_attribute("data-theme", "dark")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(html).to_have_attribute("data-theme", "dark")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("window.__themeAtParse") == "dark"
    # The theme script is inline and runs before the stylesheet in <head> can paint anything.
    head_order = page.evaluate(
        """[...document.head.children].map(el => el.tagName === "SCRIPT" && !el.src ? "inline-script"
            : el.tagName === "LINK" && el.rel === "stylesheet" ? "stylesheet" : null).filter(Boolean)"""
    )
    assert head_order.index("inline-script") < head_order.index("stylesheet")

    switch = page.locator("header").get_by_role("button", name="Русский")
    expect(switch).to_have_attribute("lang", "ru")
    switch.focus()
    page.keyboard.press("ArrowDown")  # moving around by keyboard changes nothing (WCAG 3.2.2): only pressing it does
    expect(html).to_have_attribute("lang", "en")
    page.keyboard.press("Enter")
    expect(html).to_have_attribute("lang", "ru")
    expect(page.locator("header nav")).to_contain_text("Настройки")
    page.reload()
    expect(html).to_have_attribute("lang", "ru")
    expect(page.locator("header nav").get_by_role("link", name="Настройки")).to_be_visible()
    expect(html).to_have_attribute("data-theme", "dark")
    expect(page.locator("header").get_by_role("button", name="English")).to_have_attribute("lang", "en")


def test_data_export_is_a_zip_with_a_readme(page, dana, celery_worker):
    log_in(page, "dana@example.org")
    page.goto("/settings/privacy/")
    page.get_by_role("button", name="Export my data").click()
    expect(page.get_by_text("Your export is being prepared.")).to_be_visible()
    download_link = page.get_by_role("link", name="Download")
    expect(download_link).to_be_visible(timeout=60_000)  # the page reloads itself every 3 s while pending
    with page.expect_download() as download:
        download_link.click()
    assert re.fullmatch(r"aura-export-\d{4}-\d{2}-\d{2}\.zip", download.value.suggested_filename)
    with zipfile.ZipFile(download.value.path()) as archive:
        assert "README.txt" in archive.namelist()
        assert archive.read("README.txt").strip()


def test_logging_in_after_asking_for_deletion_cancels_it(page, dana):
    log_in(page, "dana@example.org")
    page.goto("/settings/privacy/")
    form = page.locator("main form").filter(has=page.get_by_role("button", name="Delete my account"))
    form.get_by_label("Your password").fill(PASSWORD)
    form.get_by_label("I understand what happens to my data, as described above").check()
    form.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("heading", name="Your account will be deleted")).to_be_visible()
    expect(page.get_by_text("We sent a confirmation to dana@example.org.")).to_be_visible()

    log_in(page, "dana@example.org")
    expect(page).to_have_url(DASHBOARD)
    expect(page.get_by_text("Welcome back! Your account deletion is canceled.")).to_be_visible()


PUBLIC_PAGES = {"landing": "/", "pricing": "/pricing/", "login": "/login/"}
CABINET_PAGES = {
    "dashboard": "/dashboard/",
    "usage": "/usage/",
    "keys": "/keys/",
    "providers": "/providers/",
    "settings": "/settings/",
    "privacy": "/settings/privacy/",
    "billing": "/billing/",
}


def test_screenshots_of_the_main_pages_in_both_themes(new_context, dana, upstream, live_server):
    secret = wire(dana, upstream, providers=("openai", "anthropic"))
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0, timeout=20)
    for model in ("gpt-4o-mini", "claude-sonnet-4-5"):  # so the dashboard and the request log have something to show
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}])
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    backgrounds, broken = {}, []
    for theme in ("light", "dark"):
        context = new_context()
        context.add_init_script(f'localStorage.setItem("aura-theme", "{theme}");')
        page = context.new_page()
        page.on("response", lambda response: broken.append(f"{response.status} {response.url}") if response.status >= 400 else None)
        pages = list(PUBLIC_PAGES.items()) + list(CABINET_PAGES.items())
        for name, path in pages:
            if name == "dashboard":
                log_in(page, "dana@example.org")
                expect(page).to_have_url(DASHBOARD)
            response = page.goto(path)
            assert response.ok, f"{path} answered {response.status}"
            expect(page.locator("html")).to_have_attribute("data-theme", theme)
            expect(page.locator("h1").first).to_be_visible()
            backgrounds[name, theme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.screenshot(path=folder / f"{name}-{theme}.png", full_page=True)
    assert not broken, "stylesheets, scripts and images must all load"
    for name in {*PUBLIC_PAGES, *CABINET_PAGES}:
        assert backgrounds[name, "light"] != backgrounds[name, "dark"], f"{name}: the stylesheet does not switch themes"
