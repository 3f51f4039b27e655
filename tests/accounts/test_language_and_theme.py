"""The language and the theme: a signed-in user's are saved with the account; a visitor's stay in
the browser (localStorage), never in a cookie (privacy policy §8). In a real browser:
tests/e2e/test_browser_storage.py."""


def test_choosing_russian_saves_it_with_the_account_and_sets_no_cookie(alice_client, alice):
    response = alice_client.post("/language/", {"language": "ru", "next": "/settings/"})
    assert response.status_code == 302 and response.url == "/settings/"
    assert "django_language" not in response.cookies
    alice.refresh_from_db()
    assert alice.language == "ru"
    page = alice_client.get("/settings/").content.decode()
    assert '<html lang="ru"' in page
    assert "Настройки" in page


def test_the_saved_language_follows_the_user_to_a_new_browser(client, bob):
    client.force_login(bob)
    response = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert '<html lang="ru"' in response.content.decode()
    assert response["Content-Language"] == "ru" and set(response.cookies) <= {"csrftoken"}


def test_a_signed_in_user_switching_leaves_no_language_in_the_address(alice_client, alice):
    response = alice_client.post("/language/", {"language": "ru", "next": "/keys/?lang=en&page=2"})
    assert response.url == "/keys/?page=2"


def test_an_anonymous_visitor_can_switch_too(client, db):
    response = client.post("/language/", {"language": "ru", "next": "/pricing/?plan=pro"})
    assert response.status_code == 302 and response.url == "/pricing/?plan=pro&lang=ru"
    assert set(response.cookies) <= {"csrftoken"}  # the browser's script keeps the choice in localStorage
    assert '<html lang="ru"' in client.get(response.url).content.decode()
    assert '<html lang="en"' in client.get("/pricing/").content.decode()  # nothing stored on the server


def test_a_visitor_gets_the_browsers_language_unless_they_chose_another(client, db):
    assert '<html lang="ru"' in client.get("/", HTTP_ACCEPT_LANGUAGE="ru-RU,ru;q=0.9,en;q=0.8").content.decode()
    assert '<html lang="en"' in client.get("/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").content.decode()
    assert '<html lang="en"' in client.get("/?lang=en", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert '<html lang="en"' in client.get("/?lang=xx").content.decode()


def test_a_visitors_page_in_another_language_loads_again_with_the_stored_choice(client, db):
    head = client.get("/login/").content.decode().split("</head>")[0]
    assert 'localStorage.getItem("aura-language")' in head and '<script nonce="' in head
    head = client.post("/login/", {"username": "nobody@example.org", "password": "wrong"}).content.decode().split("</head>")[0]
    assert "aura-language" not in head  # a form's answer is never loaded again: the post would be lost


def test_the_old_language_cookie_is_removed(client, db):
    client.cookies["django_language"] = "ru"
    response = client.get("/", HTTP_ACCEPT_LANGUAGE="en")
    assert '<html lang="en"' in response.content.decode()  # no longer read
    assert response.cookies["django_language"].value == "" and response.cookies["django_language"]["max-age"] == 0


def test_an_unknown_language_is_a_400(client, db):
    assert client.post("/language/", {"language": "xx"}).status_code == 400


def test_next_cannot_leave_the_site(client, db):
    response = client.post("/language/", {"language": "en", "next": "https://evil.example/"})
    assert response.url == "/?lang=en"


def test_next_cannot_leave_the_site_through_a_tab_or_newline(alice_client, db):
    from urllib.parse import urlsplit

    from django.test import Client

    def on_site(url: str) -> bool:  # a browser drops tabs and newlines too: "//evil.example" is another site
        cleaned = "".join(url.split())
        return cleaned.startswith("/") and not cleaned.startswith("//") and not urlsplit(cleaned).netloc

    for sneaky in ("/\t///evil.example/phish", "/\n//evil.example/", "\t//evil.example", "/\t/evil.example"):
        assert on_site(Client().post("/language/", {"language": "ru", "next": sneaky}).url)
        assert on_site(alice_client.post("/language/", {"language": "en", "next": sneaky}).url)


def test_the_theme_is_saved_for_a_logged_in_user(alice_client, alice):
    response = alice_client.post("/theme/", {"theme": "dark"})
    assert response.json() == {"theme": "dark"}
    alice.refresh_from_db()
    assert alice.theme == "dark"
    assert 'data-theme-pref="dark"' in alice_client.get("/dashboard/").content.decode()


def test_an_anonymous_theme_choice_stays_in_the_browser(client, db):
    assert client.post("/theme/", {"theme": "light"}).status_code == 200
    assert 'data-theme-pref="system"' in client.get("/").content.decode()


def test_a_bad_theme_is_a_400(alice_client):
    response = alice_client.post("/theme/", {"theme": "purple"})
    assert response.status_code == 400
    assert "error" in response.json()


def test_the_theme_is_applied_before_first_paint(client, db):
    page = client.get("/").content.decode()
    head = page.split("</head>")[0]
    # The theme script runs in <head>, before the stylesheet and before any content.
    assert head.index('localStorage.getItem("aura-theme")') < head.index('rel="stylesheet"')
    assert '<script nonce="' in head


def test_saving_the_profile_in_another_language_confirms_it_in_that_language(client, bob):
    """Bob reads AURA in Russian; saving English in his profile says so in English on the next page."""
    client.force_login(bob)
    fields = {"display_name": bob.display_name, "email": bob.email, "language": "en"}
    page = client.post("/settings/", fields, follow=True).content.decode()
    assert '<html lang="en"' in page and "Your profile is saved." in page and "Профиль сохранён" not in page


def test_a_next_that_is_no_address_at_all_goes_home(client, db):
    assert client.post("/language/", {"language": "ru", "next": "http://[::1"}).url == "/?lang=ru"
