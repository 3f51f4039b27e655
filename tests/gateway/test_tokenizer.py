import socket

import pytest

from gateway import tokenizer


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("network access blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokenizer.encoding.cache_clear()
    yield
    tokenizer.encoding.cache_clear()


def test_cl100k_counts_offline(no_network):
    assert tokenizer.encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert tokenizer.count_tokens("hello world", "cl100k_base") == 2


def test_o200k_counts_offline(no_network):
    assert tokenizer.encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert tokenizer.count_tokens("Привет, мир!", "o200k_base") == 5


def test_special_token_text_is_ordinary_text(no_network):
    assert tokenizer.count_tokens("<|endoftext|>", "cl100k_base") > 1


def test_an_unknown_encoding_is_refused():
    with pytest.raises(ValueError):
        tokenizer.encoding("p50k_base")
