import re

from django.core import mail


def test_the_landing_page_shows_the_pitch(client, db):
    body = client.get("/").content.decode()
    assert "Cut your LLM bill, not your code." in body
    assert 'href="/signup/"' in body


def test_the_privacy_policy_is_published_with_its_date(client, db):
    body = client.get("/privacy/").content.decode()
    assert "Last updated: March 10, 2026" in body
    assert "Store the content of your prompts or AI model responses" in body
    assert "Server logs — automatically purged after 14 days" in body.replace("<strong>", "").replace("</strong>", "")
    assert 'href="mailto:privacy@aura-api.com"' in body


def test_the_privacy_policy_is_published_in_russian(client, db):
    body = client.get("/privacy/", HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9,en;q=0.5").content.decode()
    assert "Политика конфиденциальности" in body
    assert 'href="mailto:privacy@aura-api.com"' in body


def test_the_terms_are_published_in_both_languages(client, db):
    assert "Terms of service" in client.get("/terms/").content.decode()
    assert "Условия" in client.get("/terms/?lang=ru").content.decode()


def test_the_pricing_page_lists_the_free_plan(client, db):
    body = client.get("/pricing/").content.decode()
    assert "Free" in body and "10,000 requests a month" in body


def test_the_contact_form_emails_support(client, db):
    response = client.post("/contact/", {"name": "Zoe", "email": "zoe@example.org", "subject": "Hi <there>", "message": "Can I use Groq?"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["support@aura-api.com"]
    assert message.reply_to == ["zoe@example.org"]
    assert message.subject == "[AURA contact] Hi <there>"
    assert "Can I use Groq?" in message.body
    assert "Hi &lt;there&gt;" in message.alternatives[0][0]


def test_the_contact_form_shows_errors(client, db):
    response = client.post("/contact/", {"name": "", "email": "nope", "subject": "x", "message": ""})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Enter a valid email address." in body
    assert mail.outbox == []


def test_unknown_pages_get_the_sites_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "This page does not exist" in response.content.decode()


def test_a_visit_to_a_form_only_address_gets_a_page_not_a_blank(alice_client):
    for path in ("/logout/", "/settings/password/"):
        response = alice_client.get(path)
        body = response.content.decode()
        assert response.status_code == 405 and "POST" in response["Allow"], path
        assert "This address is not a page" in body and "Content-Security-Policy" in response, path
    assert alice_client.get("/keys/").status_code == 200  # still signed in: the visit did nothing


def test_pages_carry_a_nonce_csp_and_no_external_scripts(client, db):
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    body = response.content.decode()
    assert f'<script nonce="{nonce}">' in body
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    for src in re.findall(r'<script[^>]*src="([^"]+)"', body) + re.findall(r'<link[^>]*href="([^"]+)"', body):
        assert src.startswith("/"), src
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_every_script_tag_is_external_or_has_the_nonce(client, alice):
    client.force_login(alice)
    for path in ["/", "/dashboard/", "/settings/", "/privacy/", "/contact/", "/pricing/", "/login/"]:
        body = client.get(path).content.decode()
        for tag in re.findall(r"<script[^>]*>", body):
            assert "nonce=" in tag or "src=" in tag or 'type="application/json"' in tag, (path, tag)


def test_the_login_form_is_rate_limited(client, alice):
    # 41 attempts put at least 21 in one minute's window, wherever the window boundary falls.
    responses = [client.post("/login/", {"username": "alice@example.org", "password": "wrong"}) for _ in range(41)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited
    assert "You tried this too many times" in limited[0].content.decode()


def test_robots_txt_opens_the_public_pages_only_and_favicon_ico_finds_the_icon(client, db):
    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots["Content-Type"] == "text/plain; charset=utf-8"
    lines = robots.content.decode().splitlines()
    assert "Allow: /pricing/" in lines and "Allow: /privacy/" in lines and lines[-1] == "Disallow: /"
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"].startswith("/static/img/favicon") and icon["Location"].endswith(".svg")
    assert client.get(icon["Location"]).status_code == 200
    assert client.post("/robots.txt").status_code == 405


def test_pages_describe_themselves_in_the_readers_language(client, db):
    assert '<meta name="description" content="AURA cuts your LLM bill:' in client.get("/").content.decode()
    assert '<meta name="description" content="AURA снижает счёт за LLM:' in client.get("/?lang=ru").content.decode()
