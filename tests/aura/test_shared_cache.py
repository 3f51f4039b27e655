"""The shared cache's Redis connections: a pooled connection holding a stray reply is never reused as is."""

import os
import time

import pytest

from aura import cache

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="about Redis connections")


def test_the_cache_uses_aura_s_cheaper_connection_check():
    client = cache.redis()
    connection = client.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, cache.RedisParser)
    finally:
        client.connection_pool.release(connection)


def test_a_pooled_connection_with_an_unread_reply_is_not_handed_out_as_is():
    client = cache.redis()
    pool = client.connection_pool
    connection = pool.get_connection()
    connection.send_command("ECHO", "stray")  # its reply is never read
    time.sleep(0.1)  # the reply has arrived on the socket
    pool.release(connection)
    assert client.echo("mine") == b"mine"  # not "stray": the pool noticed, and reconnected


def test_an_idle_pooled_connection_is_reused():
    client = cache.redis()
    client.ping()
    before = client.client_id()
    client.ping()
    assert client.client_id() == before
