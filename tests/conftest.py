import pytest
from django.core.cache import cache

from accounts.services import user_create
from aura import cache as shared_cache

PASSWORD = "correct horse battery staple"
CHROME_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


@pytest.fixture(autouse=True)
def _clean_cache():
    # Rate-limit counters and cached lookups must not leak between tests.
    shared_cache.reset()
    cache.clear()
    yield
    cache.clear()


def make_user(email, name, **extra):
    return user_create(email=email, password=PASSWORD, display_name=name, verified=True, **extra)


@pytest.fixture
def alice(db):
    return make_user("alice@example.org", "Alice")


@pytest.fixture
def bob(db):
    return make_user("bob@example.org", "Bob", language="ru")


@pytest.fixture
def charlie(db):
    return make_user("charlie@example.org", "Charlie")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client
