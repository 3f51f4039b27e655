def test_choosing_russian_sets_the_cookie_and_the_account(alice_client, alice):
    response = alice_client.post("/language/", {"language": "ru", "next": "/settings/"})
    assert response.status_code == 302 and response.url == "/settings/"
    assert response.cookies["django_language"].value == "ru"
    alice.refresh_from_db()
    assert alice.language == "ru"
    page = alice_client.get("/settings/").content.decode()
    assert '<html lang="ru"' in page
    assert "Настройки" in page


def test_the_saved_language_follows_the_user_to_a_new_browser(client, bob):
    client.force_login(bob)
    response = client.get("/dashboard/")
    assert '<html lang="ru"' in response.content.decode()
    assert response.cookies["django_language"].value == "ru"


def test_an_anonymous_visitor_can_switch_too(client, db):
    client.post("/language/", {"language": "ru", "next": "/"})
    assert '<html lang="ru"' in client.get("/").content.decode()


def test_an_unknown_language_is_a_400(client, db):
    assert client.post("/language/", {"language": "xx"}).status_code == 400


def test_next_cannot_leave_the_site(client, db):
    response = client.post("/language/", {"language": "en", "next": "https://evil.example/"})
    assert response.url == "/"


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
