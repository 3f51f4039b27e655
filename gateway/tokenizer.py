"""Token counting with tiktoken, from BPE data installed with the requirements.

tiktoken would download its vocabularies on first use; AURA must never reach
the internet for that. The ``bpe-openai`` wheel ships the same files, and each
is checked against the sha256 that tiktoken itself publishes before use.

Counts come from the wheel's native counter, which gives tiktoken's count of
the same vocabulary and rules without building the token list: about twice as
fast here (``bench/compression.py``), and every call counts its prompt.
tiktoken stays the reference: a process uses the fast counter for an encoding
only if it gives tiktoken's recorded counts of a set of awkward texts
(``_PROBES``), else it counts with tiktoken itself; ``tests/gateway/test_tokenizer.py``
checks tiktoken still gives those counts and fuzzes the two against each other.
tiktoken's own tables are built only when something asks for them (about
110 MB a process for both vocabularies; the native counter takes about 95 MB).

Counts of longer texts are remembered in a small LRU per process, keyed by a
digest of the text (no text is kept): a conversation resends its whole history
on every call, and compression is prefix-stable, so earlier turns are counted
once rather than on every call.
"""

import functools
import gzip
import hashlib
import logging
import threading
from base64 import b64decode
from collections import OrderedDict
from collections.abc import Callable
from importlib.machinery import ExtensionFileLoader
from importlib.util import find_spec, module_from_spec, spec_from_file_location
from pathlib import Path

import tiktoken

logger = logging.getLogger(__name__)

_ENDOFTEXT = "<|endoftext|>"

# Below this many characters counting costs about as much as looking the count up.
REMEMBER_MIN_CHARS = 64
REMEMBER_MAX = 16_384  # counts held; about 200 bytes each

# Published by tiktoken (tiktoken_ext/openai_public.py) for these exact files.
_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}

_SPECIAL = {
    "cl100k_base": {
        _ENDOFTEXT: 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {_ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
}


class TokenizerDataError(RuntimeError):
    pass


def _mergeable_ranks(name: str) -> dict[bytes, int]:
    # Locate the wheel's data without importing bpe_openai, which would load its own tokenizers.
    package_dir = Path(find_spec("bpe_openai").submodule_search_locations[0])
    packed = (package_dir / "data" / f"{name}.tiktoken.gz").read_bytes()
    data = gzip.decompress(packed)
    if hashlib.sha256(data).hexdigest() != _SHA256[name]:
        raise TokenizerDataError(f"{name} data does not match tiktoken's published hash")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[b64decode(token)] = int(rank)
    return ranks


@functools.cache
def encoding(name: str) -> tiktoken.Encoding:
    """``cl100k_base`` or ``o200k_base``, built offline."""
    if name not in _SHA256:
        raise ValueError(f"unknown encoding {name!r}")
    return tiktoken.Encoding(
        name=name,
        pat_str=_PATTERNS[name],
        mergeable_ranks=_mergeable_ranks(name),
        special_tokens=_SPECIAL[name],
    )


# tiktoken's counts (o200k_base, cl100k_base) of texts that exercise every branch of both
# pre-tokenizer patterns: long runs, scripts without case, special-token text. A process counts
# with the fast counter only if it gives these; test_tokenizer.py checks tiktoken still does.
_PROBES = {
    "": (0, 0),
    "hello world": (2, 2),
    "Hello, World! It's we'LL they've I'd she'S 'tis": (14, 18),
    "  leading\n\n\n   trailing   \r\n\tTabs\t\t and  runs  of   spaces   ": (17, 17),
    "1234567890 3.14159 -42 1e10 0x1F 2026-11-27T10:59:00Z": (34, 34),
    '{"id": 1, "name": "Ünïcödé", "tags": ["a", "b"], "nested": {"x": [1, 2, 3]}}\n': (41, 43),
    "def f(x):\n    return x ** 2  # comment\n\n\nclass A:\n\tpass\n": (19, 19),
    "Привет, мир! 你好，世界。 こんにちは مرحبا بالعالم नमस्ते 🌍👍🏽 ǅemal ﬁne": (31, 51),
    "<|endoftext|><|endofprompt|><|fim_prefix|> not special here": (21, 22),
    "path/to/file.py:12: error\n/usr/bin/env\n///\n": (14, 14),
    " " * 300 + "\n" * 40 + "a" * 500 + "9" * 50: (86, 85),
    "\u00a0\u3000\u200b\u0301e\u0301 MiXeDCase CamelCaseWord ALLCAPS": (16, 17),
}
_PROBE_COLUMN = {"o200k_base": 0, "cl100k_base": 1}


def _reference(name: str) -> Callable[[str], int]:
    """tiktoken's own count."""
    encode = encoding(name).encode_ordinary
    return lambda text: len(encode(text))


@functools.cache
def _native_module():
    """bpe-openai's compiled module, loaded once and by itself: the package's ``__init__`` parses three
    vocabularies in Python at import (0.7 s and ~50 MB a process) that AURA never uses."""
    package_dir = Path(find_spec("bpe_openai").submodule_search_locations[0])
    path = str(next(package_dir.glob("_bindings*.so")))
    loader = ExtensionFileLoader("bpe_openai._bindings", path)
    module = module_from_spec(spec_from_file_location("bpe_openai._bindings", path, loader=loader))
    loader.exec_module(module)
    return module


@functools.cache
def counter(name: str) -> Callable[[str], int]:
    """A function giving tiktoken's count of a text in encoding ``name``."""
    if name not in _SHA256:
        raise ValueError(f"unknown encoding {name!r}")
    try:
        fast = _native_module().tokenizer_for_encoding(name).count
        column = _PROBE_COLUMN[name]
        agrees = all(fast(text) == counts[column] for text, counts in _PROBES.items())
    except Exception as exc:  # a wheel without the native counter, or with another API
        logger.warning("fast token counter unavailable (%s); counting with tiktoken", type(exc).__name__)
        return _reference(name)
    if not agrees:
        logger.warning("fast token counter disagrees with tiktoken on %s; counting with tiktoken", name)
        return _reference(name)

    def count(text: str) -> int:
        try:
            return fast(text)
        except UnicodeEncodeError:  # a lone surrogate: tiktoken counts it as U+FFFD, and so does this
            return fast(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    return count


def _tokenise(text: str, encoding_name: str) -> int:
    return counter(encoding_name)(text)


_remembered: OrderedDict[tuple[str, bytes], int] = OrderedDict()
_remembered_lock = threading.Lock()


def count_tokens(text: str, encoding_name: str = "o200k_base") -> int:
    """The exact tiktoken count of ``text``, special-token text counted as ordinary text."""
    if len(text) < REMEMBER_MIN_CHARS:
        return _tokenise(text, encoding_name)
    # 128 bits: a collision, which would give a wrong count, is not a practical possibility.
    key = (encoding_name, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    with _remembered_lock:
        count = _remembered.get(key)
        if count is not None:
            _remembered.move_to_end(key)
            return count
    count = _tokenise(text, encoding_name)
    with _remembered_lock:
        _remembered[key] = count
        if len(_remembered) > REMEMBER_MAX:
            _remembered.popitem(last=False)
    return count


def forget_counts() -> None:
    """Empty the remembered counts (for benchmarks and tests of the uncached cost)."""
    with _remembered_lock:
        _remembered.clear()


def warm_up() -> None:
    """Load both counters now (about a tenth of a second together) rather than in someone's first request."""
    for name in _SHA256:
        counter(name)
