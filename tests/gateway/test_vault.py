import base64
import os

import pytest
from django.core.cache import cache as django_cache
from django.db import connection

from gateway import services, vault
from gateway.models import DataKey, ProviderKey

SECRET = "sk-proj-VAULTCANARY-0123456789abcdef"


def reveal(key: ProviderKey) -> str:
    snapshot = services.sealed_vault(key.user_id)
    return snapshot.reveal(next(k for k in snapshot.keys if k.id == str(key.pk)))


def test_a_key_is_stored_encrypted_and_opens_for_its_owner(alice):
    key = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    assert key.last4 == "cdef" and key.masked == "••••cdef"
    assert SECRET.encode() not in bytes(key.ciphertext)
    assert len(bytes(key.ciphertext)) == 12 + len(SECRET) + 16  # nonce, AES-256-GCM body, tag
    assert reveal(key) == SECRET


def test_no_table_holds_the_plaintext(alice):
    services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (table names come from the schema)
            for row in cursor.fetchall():
                assert "VAULTCANARY" not in repr(row), table


def test_a_ciphertext_moved_to_another_record_does_not_open(alice):
    first = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    second = services.provider_key_save(user=alice, provider="mistral", api_key="sk-mistral-other-key-000")
    ProviderKey.objects.filter(pk=second.pk).update(ciphertext=first.ciphertext)
    django_cache.clear()
    with pytest.raises(vault.VaultError):
        reveal(ProviderKey.objects.get(pk=second.pk))


def test_a_ciphertext_moved_to_another_user_does_not_open(alice, bob):
    key = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    dek = services._data_key(bob, create=True)
    with pytest.raises(vault.VaultError):
        vault.decrypt_secret(bytes(key.ciphertext), dek=dek, user_id=bob.pk, record_id=key.pk)


def test_a_wrong_master_key_does_not_open(alice, settings):
    key = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    settings.AURA_VAULT_KEYS = {1: os.urandom(32)}
    django_cache.clear()
    with pytest.raises(vault.VaultError):
        reveal(key)


def test_rotation_re_encrypts_under_the_newest_master_key(alice, bob, settings):
    a = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    b = services.provider_key_save(user=bob, provider="anthropic", api_key="sk-ant-bobs-key-1234")
    before = bytes(a.ciphertext)
    settings.AURA_VAULT_KEYS = {**settings.AURA_VAULT_KEYS, 2: os.urandom(32)}
    assert services.vault_rotate() == 2
    a.refresh_from_db()
    assert bytes(a.ciphertext) != before
    assert set(DataKey.objects.values_list("master_version", flat=True)) == {2}
    assert reveal(a) == SECRET and reveal(b) == "sk-ant-bobs-key-1234"
    # The old master key can now be retired.
    settings.AURA_VAULT_KEYS = {2: settings.AURA_VAULT_KEYS[2]}
    django_cache.clear()
    assert reveal(a) == SECRET


def test_shredding_the_data_key_makes_every_copy_unreadable(alice):
    key = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    copy_of_backup = (bytes(key.ciphertext), bytes(DataKey.objects.get(user=alice).wrapped))
    services.data_key_shred(user=alice)
    assert services.sealed_vault(alice.pk) is None
    # Even a backup of the ciphertext is noise without the data key: a fresh one cannot open it.
    new_dek = services._data_key(alice, create=True)
    with pytest.raises(vault.VaultError):
        vault.decrypt_secret(copy_of_backup[0], dek=new_dek, user_id=alice.pk, record_id=key.pk)


def test_delete_removes_the_key_at_once(alice):
    key = services.provider_key_save(user=alice, provider="openai", api_key=SECRET)
    services.provider_key_delete(key=key)
    assert not ProviderKey.objects.exists()
    assert services.sealed_vault(alice.pk) is None


def test_vault_keys_setting_parses_versions():
    from aura.settings import parse_vault_keys

    one, two = os.urandom(32), os.urandom(32)
    keys = parse_vault_keys(f"1:{base64.b64encode(one).decode()}, 2:{base64.b64encode(two).decode()}")
    assert keys == {1: one, 2: two}
