import json
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


def fresh(text, name):
    return len(tokenizer.encoding(name).encode_ordinary(text))


@pytest.fixture
def encodes(monkeypatch):
    """The texts each encoding actually tokenises, in order."""
    seen = []
    for name in ("o200k_base", "cl100k_base"):
        enc = tokenizer.encoding(name)
        real = enc.encode_ordinary

        def spy(text, real=real, name=name):
            seen.append((name, text))
            return real(text)

        monkeypatch.setattr(enc, "encode_ordinary", spy)
    tokenizer.forget_counts()
    yield seen
    tokenizer.forget_counts()


HISTORY = "An earlier turn of the conversation, resent with every call. " * 4


def test_a_long_text_is_tokenised_once(encodes):
    first = tokenizer.count_tokens(HISTORY, "o200k_base")
    assert tokenizer.count_tokens(HISTORY, "o200k_base") == first
    assert encodes == [("o200k_base", HISTORY)]
    assert first == fresh(HISTORY, "o200k_base")


def test_each_encoding_keeps_its_own_counts(encodes):
    text = "Привет, мир! " * 20
    assert tokenizer.count_tokens(text, "o200k_base") == fresh(text, "o200k_base")
    assert tokenizer.count_tokens(text, "cl100k_base") == fresh(text, "cl100k_base")
    assert tokenizer.count_tokens(text, "o200k_base") != tokenizer.count_tokens(text, "cl100k_base")


def test_short_texts_are_not_remembered(encodes):
    tokenizer.count_tokens("hello world", "o200k_base")
    tokenizer.count_tokens("hello world", "o200k_base")
    assert len(encodes) == 2


def test_the_remembered_counts_are_bounded_and_hold_no_text(encodes, monkeypatch):
    monkeypatch.setattr(tokenizer, "REMEMBER_MAX", 3)
    texts = [f"{HISTORY} turn {i}" for i in range(5)]
    for text in texts:
        tokenizer.count_tokens(text, "o200k_base")
    tokenizer.count_tokens(texts[0], "o200k_base")  # the oldest was let go
    assert len(encodes) == 6
    assert len(tokenizer._remembered) == 3
    assert not any(isinstance(part, str) and "turn" in part for key in tokenizer._remembered for part in key)


def test_a_lone_surrogate_is_counted(encodes):
    text = json.loads('"\\ud800"') + HISTORY
    assert tokenizer.count_tokens(text, "cl100k_base") == tokenizer.count_tokens(text, "cl100k_base") > 0
