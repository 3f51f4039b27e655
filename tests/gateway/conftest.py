import pytest
from openai import OpenAI

from gateway import services
from gateway.mock_provider import MockProvider


@pytest.fixture(scope="session")
def mock():
    provider = MockProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def upstream(mock):
    mock.reset()
    return mock


def wire(user, mock, providers=("openai", "anthropic", "gemini")):
    """Store provider keys for ``user`` pointing at the mock provider, and issue an AURA key."""
    bases = {"openai": f"{mock.url}/v1", "anthropic": mock.url, "gemini": mock.url, "mistral": f"{mock.url}/v1", "custom": f"{mock.url}/v1"}
    for provider in providers:
        services.provider_key_save(
            user=user,
            provider=provider,
            api_key=f"sk-{provider}-secret-0123456789",
            base_url=bases[provider],
            label="local" if provider == "custom" else "",
        )
    _key, secret = services.api_key_issue(user=user, name="tests")
    return secret


@pytest.fixture
def alice_key(alice, upstream):
    return wire(alice, upstream)


@pytest.fixture
def sdk(live_server, alice_key):
    return OpenAI(base_url=f"{live_server.url}/v1", api_key=alice_key, max_retries=0, timeout=20)
