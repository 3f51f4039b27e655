"""Prompt compression: fewer prompt tokens for the same request.

``compress(body, level=..., encoding=...)`` takes an OpenAI chat-completions body and returns a
``Compressed`` with the body to send. Only message text is rewritten (string contents, ``text``
parts of list contents, tool results); tool definitions, ``tool_calls``, images and every other
field are passed through untouched. The input body is never mutated: changed messages and parts
are new dicts, everything else is shared with the input.

Levels:

``off``
    The very same body object, byte for byte.
``lossless`` (AURA's default)
    Rewrites that cannot change what the model is told:

    - ``json_minify``: a text that is entirely a JSON object or array loses the whitespace between
      its tokens and its ``\\uXXXX`` / ``\\/`` escapes become the characters they stand for (what
      ``json.dumps(separators=(",", ":"), ensure_ascii=False)`` writes). Keys, their order and every
      number literal stay exactly as written: the text is re-serialised with ``json.dumps`` only
      when that writes the very same characters but whitespace (so 1.0 stays 1.0, 1e5 stays 1e5
      and duplicate keys stay), and otherwise minified as text; a text minified that way is
      checked to ``json.loads`` to the same value.
    - ``whitespace``: CRLF becomes LF, trailing spaces and tabs go, two or more blank lines become
      one (three or more newlines become two) and runs of spaces between words become one space.
      Leading indentation, fenced code blocks (``` and ~~~), lines that look like code or tables,
      inline code spans and column-aligned paragraphs are left alone. A text that parses as Python
      only loses trailing whitespace and CRLF, and only if its AST stays the same.
``aggressive`` (opt-in, lossy)
    Everything lossless does, plus:

    - ``json_sample``: in an entirely-JSON text, an array of 20 or more objects with the same keys
      keeps its first 5 and last 2 items with ``{"_aura_omitted": N}`` between them (recursively).
    - ``line_dedupe``: in tool results and logs, runs of 3 or more identical lines (or identical
      but for their digits, e.g. timestamps) become the first line and ``[… repeated N times]``.
    - ``log_trim``: tool results and logs of more than 60 lines keep their first 20 and last 20
      lines and, in between, the lines that mention an error, exception, traceback, failure, fatal,
      panic or warning (with a Python traceback's frames); each gap becomes
      ``[… N lines omitted by AURA …]``.
    - ``budget_trim``: with ``max_prompt_tokens``, messages are dropped from the middle of the
      history until the prompt fits (see ``_trim_to_budget``); never raises.

Every per-text rewrite is kept only if tiktoken, with the request's encoding, counts fewer tokens
for the new text than for the text it replaces, so compression never makes a prompt longer. Each
text is compressed on its own, with no state and no randomness: the same text always gives the same
bytes wherever it sits, so the earlier turns of a growing conversation stay byte-identical from
one call to the next (and provider prompt caches keep hitting).

Counting is most of the cost, so nothing is counted twice: the counts made here are returned
(``Compressed.counts``) for the caller's prompt count, and ``tokenizer.count_tokens`` remembers
the counts of texts seen in earlier calls.
"""

import ast
import json
import re
import warnings
from bisect import bisect_left
from dataclasses import dataclass, field

from . import tokenizer

LEVELS = ("off", "lossless", "aggressive")

# The order in which transform names are reported.
TRANSFORMS = ("json_minify", "whitespace", "json_sample", "line_dedupe", "log_trim", "budget_trim")

TOOL_ROLES = ("tool", "function")
KEPT_ROLES = ("system", "developer")
MESSAGE_OVERHEAD = 4  # framing tokens counted per message for the budget

SAMPLE_MIN_ITEMS = 20
SAMPLE_HEAD = 5
SAMPLE_TAIL = 2

LOG_MIN_LINES = 60
LOG_HEAD = 20
LOG_TAIL = 20
REPEAT_MIN = 3
TRACEBACK_MAX_FRAMES = 40


@dataclass(frozen=True)
class Compressed:
    body: dict  # the body to send; for level "off" (or when nothing changed) the very object passed in
    transforms: tuple[str, ...]  # transforms applied at least once, in TRANSFORMS order
    dropped_messages: int = 0  # messages removed by budget_trim
    # Exact token counts of message texts counted while compressing: texts rewritten, before and
    # after. pipeline.count_prompt reuses them rather than counting those texts again.
    counts: dict[str, int] = field(default_factory=dict)


def compress(body: dict, *, level: str, encoding: str, max_prompt_tokens: int | None = None) -> Compressed:
    """Compress the message text of a chat-completions ``body`` at ``level`` (one of ``LEVELS``).

    ``encoding`` is the tiktoken encoding the savings are measured with ("o200k_base" or
    "cl100k_base", see ``pipeline.encoding_for``). ``max_prompt_tokens`` is only used by the
    aggressive level.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown compression level {level!r}")
    if level == "off":
        return Compressed(body=body, transforms=())
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return Compressed(body=body, transforms=())

    counter = _Counter(encoding)
    aggressive = level == "aggressive"
    applied: set[str] = set()
    new_messages = []
    changed = False
    for message in messages:
        new = _compress_message(message, counter, aggressive, applied)
        changed |= new is not message
        new_messages.append(new)

    dropped = 0
    if aggressive and max_prompt_tokens is not None:
        new_messages, dropped = _trim_to_budget(new_messages, counter, max_prompt_tokens)
        if dropped:
            applied.add("budget_trim")
            changed = True

    if not changed:
        return Compressed(body=body, transforms=(), counts=counter.known)
    new_body = dict(body)
    new_body["messages"] = new_messages
    transforms = tuple(t for t in TRANSFORMS if t in applied)
    return Compressed(body=new_body, transforms=transforms, dropped_messages=dropped, counts=counter.known)


# messages ----------------------------------------------------------------------------


class _Counter:
    """Token counts with one encoding, and the difference between two versions of a text.

    tiktoken splits text into pieces before BPE, and no piece runs across a newline that is followed
    by a character other than whitespace or "/" (true of both cl100k_base and o200k_base), so a
    text's count is the sum of the counts of its segments cut there. When a rewrite leaves those
    segments in place (the whitespace rewrite does), only the segments that changed are counted.

    ``whole`` counts a message text and keeps the count in ``known``; ``known`` also takes the
    count of a rewritten text worked out from its original's count and the difference.
    """

    _SEGMENT = re.compile(r"(?<=\n)(?=[^\s/])")
    CHUNK = 2048

    def __init__(self, encoding: str):
        self._encoding = encoding
        self.known: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return tokenizer.count_tokens(text, self._encoding)

    def whole(self, text: str) -> int:
        count = self.known.get(text)
        if count is None:
            count = self.known[text] = self(text)
        return count

    def delta(self, old: str, new: str) -> int:
        """count(new) - count(old)."""
        a = self._SEGMENT.split(old)
        b = self._SEGMENT.split(new)
        if len(a) != len(b):
            return self(new) - self(old)
        return sum(self(y) - self(x) for x, y in zip(a, b, strict=True) if x != y)

    def best(self, old: str, new: str) -> tuple[str, int]:
        """``old`` with each changed stretch of segments taken from ``new`` where that has fewer tokens.

        ``new`` must be ``old`` rewritten line by line, leaving every line that starts with a
        character other than whitespace or "/" in place. Returns the text and its count minus
        ``old``'s; the count is never higher than ``old``'s.
        """
        a = self._SEGMENT.split(old)
        b = self._SEGMENT.split(new)
        if len(a) != len(b):
            delta = self(new) - self(old)
            return (new, delta) if delta < 0 else (old, 0)
        out: list[str] = []
        total = 0
        i = 0
        n = len(a)
        while i < n:
            if a[i] == b[i]:
                out.append(a[i])
                i += 1
                continue
            # A stretch of changed segments, up to CHUNK characters, is kept or rewritten as one.
            j = i
            size = 0
            while j < n and a[j] != b[j] and size < self.CHUNK:
                size += len(a[j])
                j += 1
            before = "".join(a[i:j])
            after = "".join(b[i:j])
            delta = self(after) - self(before)
            if delta < 0:
                out.append(after)
                total += delta
            else:
                out.append(before)
            i = j
        return "".join(out), total


def _compress_message(message, counter: _Counter, aggressive: bool, applied: set) -> dict:
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    is_tool = message.get("role") in TOOL_ROLES
    if isinstance(content, str):
        new = _compress_text(content, counter, aggressive, is_tool, applied)
        if new is content:
            return message
        return {**message, "content": new}
    if isinstance(content, list):
        parts = []
        changed = False
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                new = _compress_text(part["text"], counter, aggressive, is_tool, applied)
                if new is not part["text"]:
                    part = {**part, "text": new}
                    changed = True
            parts.append(part)
        if changed:
            return {**message, "content": parts}
    return message


def _compress_text(text: str, counter: _Counter, aggressive: bool, is_tool: bool, applied: set) -> str:
    """The compressed text, or ``text`` itself when nothing was worth changing."""
    if not text:
        return text
    parsed = _json_minified(text)
    if parsed is not None:
        minified, value, dumped = parsed
        current = text
        if minified != text and counter.whole(minified) < counter.whole(text):
            current = minified
            applied.add("json_minify")
        if aggressive:
            sampled = _json_sampled(minified, value, dumped)
            if sampled != minified and counter.whole(sampled) < counter.whole(current):
                current = sampled
                applied.add("json_sample")
        return current

    current = text
    normalized, python = _whitespace_normalized(text)
    if normalized != text:
        if python:  # the AST was checked for this exact text: all or nothing
            delta = counter.delta(text, normalized)
        else:
            normalized, delta = counter.best(text, normalized)
        if delta < 0:
            counter.known[normalized] = counter.whole(text) + delta
            current = normalized
            applied.add("whitespace")
    if aggressive and (is_tool or _looks_like_log(current)):
        for name, rewrite in (("line_dedupe", _lines_deduped), ("log_trim", _log_trimmed)):
            candidate = rewrite(current)
            if candidate != current and counter.whole(candidate) < counter.whole(current):
                current = candidate
                applied.add(name)
    return current


# lossless: JSON -------------------------------------------------------------------------

# A JSON string, or a run of characters that are neither whitespace nor a quote. In valid JSON
# whitespace only occurs inside strings or between tokens, so joining the matches minifies it.
_JSON_PIECE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^"\s]+')
_JSON_ESCAPE = re.compile(r"\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|(/)|.)")


def _unescape(match: re.Match) -> str:
    high, low, code, slash = match.groups()
    if slash:
        return "/"
    if high:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
    if code:
        point = int(code, 16)
        # Control characters, '"', '\\', lone surrogates and line/paragraph separators stay escaped.
        if point >= 0x20 and point not in (0x22, 0x5C, 0x7F, 0x2028, 0x2029) and not 0xD800 <= point <= 0xDFFF:
            return chr(point)
    return match.group()


def _json_minified(text: str) -> tuple[str, object, bool] | None:
    """(compact form, value, whether the compact form is ``json.dumps`` of the value) of a text that
    is entirely a JSON object or array; None for any other text. The compact form is ``text``
    itself when it cannot be made (or made safely)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{" or stripped[-1] not in "]}":
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    # Fast path: json.dumps, when it wrote exactly what the text says (same non-whitespace
    # characters, so the same number literals, escapes and keys). Written from the parsed value
    # itself, it needs no second parse.
    try:
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):
        compact = ""
    if "".join(compact.split()) == "".join(stripped.split()):
        return compact, value, True
    # Else the lexical way, checked: the same value (number literals are untouched, so 1.0 stays 1.0).
    compact = "".join(_JSON_PIECE.findall(stripped))
    if "\\" in compact:
        compact = _JSON_ESCAPE.sub(_unescape, compact)
    try:
        same = json.loads(compact) == value
    except (ValueError, RecursionError):
        same = False
    return (compact if same else text), value, False


# lossless: whitespace -------------------------------------------------------------------

_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_CODE_LINE = re.compile(
    r"^(?:\t| {4})"  # indented by a tab or 4+ spaces
    r"|^\s*(?:#include|#define|#!|import\s|from\s+[\w.]+\s+import\s|@\w|//|/\*|\*/|[}\])]|<[/!?\w])"
    r"|\b(?:def|class|return|lambda|elif)\s"
    r"|=>|==|:=|!=|<=|>=|->|&&|\|\||::|\+\+|\+=|-="
    r"|^\s*\|.*\|\s*$"  # a table row
    r"|[{}].*;|;.*[{}]|;\s*$|[{(\[]\s*$"
)
_INNER_SPACES = re.compile(r"(?<=\S) {2,}(?=\S)")
_HAS_INNER_SPACES = re.compile(r"  (?<=\S  ) *\S")  # finds what _INNER_SPACES does, from its two spaces: faster
_ALIGNED = re.compile(r"\S {3,}\S")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)

_FENCE, _CODE, _BLANK, _PROSE = range(4)


def _whitespace_normalized(text: str) -> tuple[str, bool]:
    """The text with its whitespace normalised, and whether it was handled as Python."""
    line_ends = "\r\n" in text or " \n" in text or "\t\n" in text or text[-1] in " \t"
    # Runs of spaces that only indent (all of them, in most code) leave the line-by-line pass
    # nothing to do but drop a final CR.
    spaces = "  " in text and (_HAS_INNER_SPACES.search(text) is not None or text[-1] == "\r")
    if not (line_ends or spaces or "\n\n\n" in text):
        return text, False
    prose = _prose_normalized(text)
    if "\n" not in text or not (line_ends or prose != text):
        return prose, False
    tree = _python_ast(text)
    if tree is None:
        return prose, False
    # Python: only line ends, and only if the program stays the same.
    code = _TRAILING.sub("", text.replace("\r\n", "\n"))
    if code != text and _python_ast(code) == tree:
        return code, True
    return text, True


def _python_ast(text: str) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.dump(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _prose_normalized(text: str) -> str:
    lines = text.split("\n")
    ends_with_newline = lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    kinds = []
    fence = None
    for line in lines:
        body = line[:-1] if line.endswith("\r") else line
        if fence is not None:
            kinds.append(_FENCE)
            stripped = body.strip()
            if len(body) - len(body.lstrip(" ")) <= 3 and stripped and stripped == fence[0] * len(stripped) and len(stripped) >= len(fence):
                fence = None
            continue
        opened = _FENCE_OPEN.match(body)
        if opened:
            fence = opened.group(1)
            kinds.append(_FENCE)
        elif not body.strip(" \t"):
            kinds.append(_BLANK)
        elif _CODE_LINE.search(body):
            kinds.append(_CODE)
        else:
            kinds.append(_PROSE)

    # A paragraph of several lines with a run of 3+ spaces inside a line is taken as columns: its
    # spacing stays.
    aligned = [False] * len(lines)
    start = 0
    for i in range(len(lines) + 1):
        if i == len(lines) or kinds[i] == _BLANK:
            if i - start > 1 and any(kinds[j] == _PROSE and _ALIGNED.search(lines[j]) for j in range(start, i)):
                aligned[start:i] = [True] * (i - start)
            start = i + 1

    out = []
    n = len(lines)
    i = 0
    while i < n:
        kind = kinds[i]
        line = lines[i]
        if kind == _FENCE:
            out.append(line)
        elif kind == _CODE:
            out.append(line[:-1] if line.endswith("\r") else line)
        elif kind == _PROSE:
            out.append(_prose_line(line, aligned[i]))
        else:
            j = i
            while j < n and kinds[j] == _BLANK:
                j += 1
            before = kinds[i - 1] if i else None
            after = kinds[j] if j < n else None
            if before == _CODE or after == _CODE:
                out.extend(line[:-1] if line.endswith("\r") else line for line in lines[i:j])
            else:
                # At most two newlines in a row: one blank line after a line (the last line's own
                # newline counts), two blank lines at the very start or at an unterminated end.
                inner = 0 < i and (j < n or ends_with_newline)
                out.extend([""] * min(j - i, 1 if inner else 2))
            i = j
            continue
        i += 1
    if ends_with_newline:
        out.append("")
    return "\n".join(out)


def _prose_line(line: str, aligned: bool) -> str:
    body = (line[:-1] if line.endswith("\r") else line).rstrip(" \t")
    if aligned or "  " not in body:
        return body
    quotes = [q for q in '`"' if q in body]
    if quotes:
        # Inline code and quoted strings keep their spacing: only the prose before the first and
        # after the last backtick or double quote is touched.
        first = min(body.index(q) for q in quotes)
        last = max(body.rindex(q) for q in quotes)
        return _INNER_SPACES.sub(lambda m: m.group() if first < m.start() < last else " ", body)
    return _INNER_SPACES.sub(" ", body)


# aggressive: JSON sampling --------------------------------------------------------------

_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]|[^"{}\[\],:]+')


def _json_sampled(compact: str, value, dumped: bool) -> str:
    """``compact`` (minified JSON, parsing to ``value``) with every long array of same-keyed
    objects cut to a sample.

    When ``compact`` is exactly ``json.dumps`` of ``value`` (``dumped``), the sample is cut from
    the value and dumped (the C encoder writes each kept item as it was); else from the text,
    token by token (number literals and escapes kept as written).
    """
    if "[{" not in compact:
        return compact
    if dumped:
        try:
            sampled = _sampled_value(value)
        except RecursionError:  # nested deeper than the recursion allows: the text way, iterative
            sampled = None
        if sampled is value:
            return compact
        if sampled is not None:
            return json.dumps(sampled, separators=(",", ":"), ensure_ascii=False)
    elif not _has_similar_array(value):
        return compact
    arrays = _similar_arrays(compact)
    if not arrays:
        return compact
    arrays.sort()
    opens = [a[0] for a in arrays]

    def emit(low: int, high: int) -> str:
        out = []
        pos = low
        for k in range(bisect_left(opens, low), len(arrays)):
            start, close, commas = arrays[k]
            if start >= high:
                break
            if start < pos:  # inside an array already sampled
                continue
            out.append(compact[pos:start])
            out.append(sample(start, close, commas))
            pos = close + 1
        out.append(compact[pos:high])
        return "".join(out)

    def sample(start: int, close: int, commas: list[int]) -> str:
        starts = [start + 1] + [c + 1 for c in commas]
        ends = commas + [close]
        n = len(starts)
        head = [emit(starts[i], ends[i]) for i in range(SAMPLE_HEAD)]
        tail = [emit(starts[i], ends[i]) for i in range(n - SAMPLE_TAIL, n)]
        marker = f'{{"_aura_omitted":{n - SAMPLE_HEAD - SAMPLE_TAIL}}}'
        return "[" + ",".join([*head, marker, *tail]) + "]"

    sampled = emit(0, len(compact))
    try:
        json.loads(sampled)
    except (ValueError, RecursionError):
        return compact
    return sampled


def _is_similar_array(items: list) -> bool:
    """SAMPLE_MIN_ITEMS+ objects, all with one set of keys."""
    if len(items) < SAMPLE_MIN_ITEMS or not isinstance(items[0], dict):
        return False
    keys = items[0].keys()
    return all(isinstance(i, dict) and i.keys() == keys for i in items)


def _sampled_value(value):
    """``value`` with each similar array cut to its head, a count of what was left out, and its
    tail, items kept sampled in turn; ``value`` itself (the same object) when nothing was cut."""
    if isinstance(value, list):
        if _is_similar_array(value):
            n = len(value)
            omitted = {"_aura_omitted": n - SAMPLE_HEAD - SAMPLE_TAIL}
            return [*map(_sampled_value, value[:SAMPLE_HEAD]), omitted, *map(_sampled_value, value[n - SAMPLE_TAIL :])]
        items = list(map(_sampled_value, value))
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, dict):
        out = None
        for key, item in value.items():
            if isinstance(item, (list, dict)):
                new = _sampled_value(item)
                if new is not item:
                    if out is None:
                        out = dict(value)
                    out[key] = new
        return value if out is None else out
    return value


def _has_similar_array(value) -> bool:
    """Whether a parsed JSON value holds an array that _json_sampled would cut (a cheap pre-check)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            if _is_similar_array(item):
                return True
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return False


def _similar_arrays(compact: str) -> list[tuple[int, int, list[int]]]:
    """(open, close, comma positions) of each array of SAMPLE_MIN_ITEMS+ objects with one key set."""
    found = []
    # Array frames: [True, open, commas, element key sets, current element's key set or None]
    # Object frames: [False, open, keys, expecting a key]
    stack: list[list] = []
    for match in _JSON_TOKEN.finditer(compact):
        token = match.group()
        char = token[0]
        frame = stack[-1] if stack else None
        if char == "{" or char == "[":
            stack.append([True, match.start(), [], [], None] if char == "[" else [False, match.start(), [], True])
        elif char == "}" or char == "]":
            stack.pop()
            info = None
            if char == "}":
                keys = frame[2]
                unique = frozenset(keys)
                info = unique if len(unique) == len(keys) else None
            elif match.start() > frame[1] + 1:  # a non-empty array
                infos = frame[3]
                infos.append(frame[4])
                first = infos[0]
                if len(infos) >= SAMPLE_MIN_ITEMS and first is not None and all(i == first for i in infos):
                    found.append((frame[1], match.start(), frame[2]))
            if stack and stack[-1][0]:
                stack[-1][4] = info
        elif char == ",":
            if frame[0]:
                frame[3].append(frame[4])
                frame[2].append(match.start())
                frame[4] = None
            else:
                frame[3] = True
        elif char == ":":
            continue
        elif frame is not None:
            if frame[0]:
                frame[4] = None
            elif char == '"' and frame[3]:
                frame[2].append(token)
                frame[3] = False
    return found


# aggressive: tool results and logs ------------------------------------------------------

_ERROR_LINE = re.compile(r"error|exception|traceback|fail|fatal|panic|warn", re.IGNORECASE)
_LOG_LINE = re.compile(
    r"^\s*\[?(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\d\d:\d\d:\d\d|\d{10}|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d"
    r"|(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|FATAL|CRITICAL|PANIC)\b)",
)
_DIGITS = re.compile(r"\d+")


def _looks_like_log(text: str) -> bool:
    """More than LOG_MIN_LINES lines, at least a third of them starting with a timestamp or a log level."""
    if text.count("\n") < LOG_MIN_LINES:
        return False
    lines = [line for line in text.split("\n") if line.strip()]
    return len(lines) > LOG_MIN_LINES and sum(1 for line in lines if _LOG_LINE.match(line)) * 3 >= len(lines)


def _lines_deduped(text: str) -> str:
    lines = text.split("\n")
    if len(lines) < REPEAT_MIN:
        return text
    out = []
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        j = i + 1
        if line.strip():
            while j < n and lines[j] == line:
                j += 1
            if j - i < REPEAT_MIN and any(c.isdigit() for c in line):
                shape = _DIGITS.sub("0", line)
                j = i + 1
                while j < n and _DIGITS.sub("0", lines[j]) == shape:
                    j += 1
        if j - i >= REPEAT_MIN:
            same = all(lines[k] == line for k in range(i + 1, j))
            out.append(line)
            out.append(f"[… repeated {j - i} times]" if same else f"[… {j - i} similar lines, differing only in numbers]")
        else:
            out.extend(lines[i:j])
        i = j
    return "\n".join(out)


def _log_trimmed(text: str) -> str:
    lines = text.split("\n")
    n = len(lines)
    if n <= LOG_MIN_LINES:
        return text
    keep = [False] * n
    keep[:LOG_HEAD] = [True] * LOG_HEAD
    keep[n - LOG_TAIL :] = [True] * LOG_TAIL
    i = LOG_HEAD
    while i < n - LOG_TAIL:
        line = lines[i]
        if (line.startswith("[… ") and keep[i - 1]) or _ERROR_LINE.search(line):
            keep[i] = True
            if "Traceback" in line:
                # The frames (indented) and the exception line after them.
                j = i + 1
                while j < n and j - i <= TRACEBACK_MAX_FRAMES and lines[j][:1] in (" ", "\t"):
                    keep[j] = True
                    j += 1
                if j < n:
                    keep[j] = True
                i = j
        i += 1
    out = []
    i = 0
    while i < n:
        if keep[i]:
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < n and not keep[j]:
            j += 1
        out.append(f"[… {j - i} lines omitted by AURA …]")
        i = j
    return "\n".join(out)


# aggressive: budget ---------------------------------------------------------------------


def _texts(content) -> list[str]:
    """The texts of a message content (like adapters.base.text_of, but never failing on odd parts)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
    return []


def _message_tokens(message, counter: _Counter) -> int:
    if not isinstance(message, dict):
        return MESSAGE_OVERHEAD
    total = MESSAGE_OVERHEAD
    text = "".join(_texts(message.get("content")))
    if text:
        total += counter(text)
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += sum(counter(v) for v in (function.get("name"), function.get("arguments")) if isinstance(v, str) and v)
    return total


def _utf8_upper_bound(messages: list) -> int:
    """At least what _message_tokens adds up to, from byte lengths alone."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD
        if not isinstance(message, dict):
            continue
        total += sum(len(text.encode("utf-8", "surrogatepass")) for text in _texts(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                total += sum(
                    len(v.encode("utf-8", "surrogatepass")) for v in (function.get("name"), function.get("arguments")) if isinstance(v, str)
                )
    return total


def _units(indices: list[int], roles: list) -> list[list[int]]:
    """Indices grouped so that tool results stay with the message before them (the assistant's call)."""
    units: list[list[int]] = []
    for i in indices:
        if roles[i] in TOOL_ROLES and units:
            units[-1].append(i)
        else:
            units.append([i])
    return units


def _trim_to_budget(messages: list, counter: _Counter, budget: int) -> tuple[list, int]:
    """Drop messages from the middle of the history until the prompt fits ``budget``.

    Kept always: system and developer messages, everything before the first user message, the
    first user message, the last user message and the most recent exchange after it (the last
    assistant message with its tool results). Dropped first, oldest first: whole turns between the
    first and the last user message; then the replies to the first user message; then the earlier
    steps after the last user message (with no user message at all: the oldest exchanges but the
    last). An assistant message with tool calls and its tool results go together. When even that
    does not fit, what is left is sent as it is.
    """
    if _utf8_upper_bound(messages) <= budget:  # no token is shorter than a byte: fits without counting
        return messages, 0
    costs = [_message_tokens(m, counter) for m in messages]
    total = sum(costs)
    if total <= budget:
        return messages, 0
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    n = len(messages)
    users = [i for i, role in enumerate(roles) if role == "user"]

    def droppable(low: int, high: int) -> list[int]:
        return [i for i in range(low, high) if roles[i] not in KEPT_ROLES]

    candidates: list[list[int]] = []
    if users:
        first, last = users[0], users[-1]
        for k in range(1, len(users) - 1):
            candidates.append(droppable(users[k], users[k + 1]))
        if first != last:
            candidates.extend(_units(droppable(first + 1, users[1]), roles))
        recent = _units(droppable(last + 1, n), roles)
    else:
        first_other = next((i for i, role in enumerate(roles) if role not in KEPT_ROLES), n)
        recent = _units(droppable(first_other, n), roles)
    candidates.extend(recent[:-1])

    dropped: set[int] = set()
    for group in candidates:
        if total <= budget:
            break
        if group:
            dropped.update(group)
            total -= sum(costs[i] for i in group)
    if not dropped:
        return messages, 0
    return [m for i, m in enumerate(messages) if i not in dropped], len(dropped)
