import json
import random
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
    tokenizer.counter.cache_clear()
    yield
    tokenizer.encoding.cache_clear()
    tokenizer.counter.cache_clear()


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
    real = tokenizer._tokenise

    def spy(text, name):
        seen.append((name, text))
        return real(text, name)

    monkeypatch.setattr(tokenizer, "_tokenise", spy)
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


def awkward_texts(seed, n):
    """Random texts over an alphabet that exercises every branch of both pre-tokenizers."""
    rng = random.Random(seed)
    alphabet = [
        *"abcXYZ 019\n\r\t  .,;:'\"{}[]()-_/\\!?@#$%^&*~`",
        "'s",
        "'LL",
        "'ve",
        "é",
        "ß",
        "中",
        "文",
        "😀",
        "\u200b",
        "\u00a0",
        "\u0640",
        "ǅ",
        "\u0301",
        "𝔘",
        "\u3000",
        "<|endoftext|>",
        "\ud800",
        "    ",
    ]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(n)]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_fast_counter_gives_tiktokens_count(name):
    """AURA counts with bpe-openai's native counter: it must agree with tiktoken on every text."""
    count = tokenizer.counter(name)
    assert count.__qualname__ == "counter.<locals>.count"  # the fast one, not tiktoken's
    for text in [*awkward_texts(name, 3000), " " * 20_000, "\n" * 5000, "7" * 4001, "x" * 50_000]:
        assert count(text) == fresh(text, name), repr(text[:80])


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_recorded_probe_counts_are_tiktokens(name):
    column = tokenizer._PROBE_COLUMN[name]
    assert {text: fresh(text, name) for text in tokenizer._PROBES} == {text: c[column] for text, c in tokenizer._PROBES.items()}


def test_a_counter_that_disagrees_with_tiktoken_is_not_used(monkeypatch, caplog):
    native = tokenizer._native_module()

    class OffByOne:
        def __init__(self, name):
            self._count = native.tokenizer_for_encoding(name).count

        def count(self, text):
            return self._count(text) + (len(text) > 200)

    monkeypatch.setattr(tokenizer, "_native_module", lambda: type("Module", (), {"tokenizer_for_encoding": OffByOne}))
    tokenizer.counter.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="gateway.tokenizer"):
            count = tokenizer.counter("cl100k_base")
        text = "A long sentence that the broken counter would miscount. " * 10
        assert count(text) == fresh(text, "cl100k_base")
        assert "disagrees with tiktoken" in caplog.text
    finally:
        tokenizer.counter.cache_clear()
