"""Token counting with tiktoken, from BPE data installed with the requirements.

tiktoken would download its vocabularies on first use; AURA must never reach
the internet for that. The ``bpe-openai`` wheel ships the same files, and each
is checked against the sha256 that tiktoken itself publishes before use.

Counts of longer texts are remembered in a small LRU per process, keyed by a
digest of the text (no text is kept): a conversation resends its whole history
on every call, and compression is prefix-stable, so earlier turns are counted
once rather than on every call.
"""

import functools
import gzip
import hashlib
import threading
from base64 import b64decode
from collections import OrderedDict
from importlib.util import find_spec
from pathlib import Path

import tiktoken

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


_remembered: OrderedDict[tuple[str, bytes], int] = OrderedDict()
_remembered_lock = threading.Lock()


def count_tokens(text: str, encoding_name: str = "o200k_base") -> int:
    """The exact tiktoken count of ``text``, special-token text counted as ordinary text."""
    if len(text) < REMEMBER_MIN_CHARS:
        return len(encoding(encoding_name).encode_ordinary(text))
    # 128 bits: a collision, which would give a wrong count, is not a practical possibility.
    key = (encoding_name, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    with _remembered_lock:
        count = _remembered.get(key)
        if count is not None:
            _remembered.move_to_end(key)
            return count
    count = len(encoding(encoding_name).encode_ordinary(text))
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
    """Load both vocabularies now (about a quarter of a second each) rather than in someone's first request."""
    for name in _SHA256:
        encoding(name)
