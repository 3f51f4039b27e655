import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from tests.metrics.conftest import record


def aura(*args):
    from io import StringIO

    out = StringIO()
    call_command("aura", *args, stdout=out)
    return out.getvalue()


def test_user_create_makes_a_verified_user(db):
    output = aura("user-create", "--email", "Ops@Example.org", "--password", "a long operator passphrase", "--name", "Ops")
    user = User.objects.get()
    assert output.strip() == f"created user {user.pk} ops@example.org"
    assert user.email_verified and user.display_name == "Ops"
    assert user.check_password("a long operator passphrase")


def test_user_create_refuses_a_duplicate(alice):
    with pytest.raises(CommandError, match="already exists"):
        aura("user-create", "--email", "alice@example.org", "--password", "a long operator passphrase")


def test_user_create_refuses_a_weak_password(db):
    with pytest.raises(CommandError, match="password rejected"):
        aura("user-create", "--email", "x@example.org", "--password", "123")


def test_user_show_prints_json_without_secrets(alice):
    data = json.loads(aura("user-show", "--email", "ALICE@example.org"))
    assert data["id"] == alice.pk
    assert data["email"] == "alice@example.org"
    assert data["plan"] == "free"
    assert data["status"] == "active"
    assert "password" not in json.dumps(data)
    assert alice.password not in json.dumps(data)


def test_user_show_unknown_is_an_error(db):
    with pytest.raises(CommandError, match="no user with email"):
        aura("user-show", "--email", "nobody@example.org")


def test_user_show_counts_the_quota_as_the_gateway_does(alice):
    record(alice, request_id="req_fallback-1", status=503)  # an attempt that failed over to another provider
    record(alice, request_id="req_fallback")
    assert json.loads(aura("user-show", "--email", "alice@example.org"))["quota"]["used"] == 1
