"""A seeded schema fuzzer for the OpenAI endpoints: mutated bodies, and the rule every answer must keep.

``case(seed, index)`` builds one request from a valid body of one endpoint with one to three
mutations: type swaps, integers at and beyond 64 bits, NaN/Infinity, deep nesting, huge strings,
unicode edge cases, missing and extra fields, wrong content types, truncated JSON, duplicate keys,
non-object documents and invalid UTF-8. The same (seed, index) always gives the same bytes, so a
failure is reproduced by its index alone (``python -m service.tests.schema_fuzz SEED INDEX`` prints it).

``verdict`` is the rule: never a status >= 500, and every error body (and every SSE error event) is
exactly ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}


class Raw:
    """A JSON token written verbatim (``NaN``, ``1e400``, a 400-digit integer)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r})"


class Dup:
    """A JSON object that may repeat keys: a list of (key, value) pairs, written in order."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def dumps(value: Any) -> str:
    """JSON text for the fuzzer's values: Raw tokens written verbatim, Dup objects with their repeats."""
    if isinstance(value, Dup):
        return "{" + ",".join(f"{dumps(k)}:{dumps(v)}" for k, v in value.pairs) + "}"
    raws: list[str] = []

    def hide(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(v.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(v, dict):
            return {k: hide(item) for k, item in v.items()}
        if isinstance(v, list):
            return [hide(item) for item in v]
        return v

    text = json.dumps(hide(value), ensure_ascii=False)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', raw, 1)
    return text


# -- valid bodies -----------------------------------------------------------------------------------


def valid_body(rng: random.Random, kind: str, model: str) -> dict[str, Any]:
    """A valid request of ``kind`` with a random selection of the optional fields OpenAI documents."""
    if kind == "chat":
        messages: list[Any] = [{"role": "user", "content": rng.choice(["Hello", "Tell me a story", "2+2?"])}]
        if rng.random() < 0.4:
            messages.insert(0, {"role": "system", "content": "You are terse."})
        if rng.random() < 0.3:
            messages.append({"role": "assistant", "content": "Sure."})
            messages.append({"role": "user", "content": [{"type": "text", "text": "go on"}]})
        body: dict[str, Any] = {"model": model, "messages": messages}
        optional = {
            "max_tokens": rng.randint(1, 8),
            "max_completion_tokens": rng.randint(1, 8),
            "temperature": rng.choice([0, 0.7, 1]),
            "top_p": 0.9,
            "n": 1,
            "seed": rng.randint(0, 1000),
            "stop": rng.choice(["\n", ["END", "STOP"]]),
            "user": f"user-{rng.randint(0, 9)}",
            "presence_penalty": 0.1,
            "frequency_penalty": 0.1,
            "logprobs": True,
            "top_logprobs": 2,
            "logit_bias": {"50256": -100},
            "response_format": {"type": "text"},
            "stream": rng.random() < 0.5,
            "stream_options": {"include_usage": rng.random() < 0.5},
        }
    elif kind == "completions":
        body = {"model": model, "prompt": rng.choice(["Once upon a time", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])}
        optional = {
            "max_tokens": rng.randint(1, 8),
            "temperature": rng.choice([0, 0.5]),
            "top_p": 1,
            "n": 1,
            "seed": rng.randint(0, 1000),
            "stop": ".",
            "echo": False,
            "logprobs": 1,
            "suffix": None,
            "user": "u",
            "stream": rng.random() < 0.5,
            "stream_options": {"include_usage": True},
        }
    else:
        body = {"model": model, "input": rng.choice(["hello", ["one", "two"], [1, 2, 3], [[1], [2, 3]]])}
        optional = {"encoding_format": rng.choice(["float", "base64"]), "user": "u", "dimensions": 8}
    for name in rng.sample(sorted(optional), rng.randint(0, len(optional))):
        body[name] = optional[name]
    if body.get("stream_options") is not None and not body.get("stream"):
        body.pop("stream_options")
    return body


# -- values and mutations ---------------------------------------------------------------------------

EDGE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63) - 1,
    10**30,
    -(10**30),
    1e300,
    -1e300,
    1e-300,
    0.5,
    -0.0,
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1" + "0" * 400),
    Raw("-" + "9" * 400),
    Raw("1E+2"),
    Raw("0.1e-999"),
]

STRANGE_STRINGS = [
    "",
    " ",
    "\x00",
    "nul\x00inside",
    "\u2028\u2029",
    "\ufeffbom",
    "\U0001f600" * 10,
    "e\u0301" * 50,
    "\u202eRTL override",
    "\ufffe\uffff",
    "\U0010ffff",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%s%n%x",
    "{{7*7}}",
    "' OR 1=1 --",
    "\\",
    '"',
    "\r\n\r\nHTTP/1.1 200 OK",
    "a" * 300,
    "model\x1fsep",
]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice(EDGE_NUMBERS)
    if pick == 3:
        return rng.choice(STRANGE_STRINGS)
    if pick == 4:
        return rng.uniform(-1e6, 1e6)
    if pick == 5:
        return rng.randint(-(2**70), 2**70)
    if pick == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if pick == 7:
        return {rng.choice(["role", "content", "type", "text", "x", ""]): random_value(rng, depth + 1)}
    return []


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a dict or list inside ``value`` (``()`` is the body itself)."""
    found = []
    if isinstance(value, dict | list) and len(path) < 8:  # not into an earlier mutation's deep nesting
        found.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found += _containers(item, (*path, key))
    return found


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a container (not the body itself)."""
    found = []
    if isinstance(value, dict | list) and len(path) < 8:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            found.append((*path, key))
            found += _leaves(item, (*path, key))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _set(body: Any, path: tuple[Any, ...], new: Any) -> None:
    _get(body, path[:-1])[path[-1]] = new


def nested(rng: random.Random, depth: int) -> Raw:
    """``depth`` levels of arrays or objects, as text: deeper than any recursive encoder goes."""
    if rng.random() < 0.5:
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "null" + "}" * depth)


@dataclass
class Case:
    """One fuzzed request: what was done to it, and its bytes."""

    index: int
    kind: str
    body: bytes
    content_type: str | None
    mutations: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return PATHS[self.kind]

    def describe(self, limit: int = 600) -> str:
        shown = self.body if len(self.body) <= limit else self.body[:limit] + b"...(%d bytes)" % len(self.body)
        return (
            f"case {self.index} POST {self.path} content-type={self.content_type!r} "
            f"headers={self.headers} mutations={self.mutations}\n  body={shown!r}"
        )


def _mutate_tree(rng: random.Random, body: dict[str, Any], notes: list[str]) -> Any:
    """Apply one structural mutation to ``body`` in place, or return a replacement document."""
    # Huge strings are rare: each costs megabytes on the wire, and a few dozen cover the limit's edges.
    ops = {"type_swap": 3, "number": 3, "nesting": 1.5, "huge_string": 0.7, "unicode": 2, "missing": 2, "extra": 2}
    op = rng.choices([*ops, "duplicate"], weights=[*ops.values(), 1])[0]
    leaves = _leaves(body)
    if op == "type_swap" and leaves:
        path = rng.choice(leaves)
        new = random_value(rng)
        _set(body, path, new)
        notes.append(f"type_swap {path}={new!r:.60}")
    elif op == "number":
        numeric = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "seed", "logprobs"]
        numeric += ["top_logprobs", "dimensions", "presence_penalty", "best_of", "frequency_penalty"]
        path = (rng.choice(numeric),) if rng.random() < 0.7 or not leaves else rng.choice(leaves)
        new = rng.choice(EDGE_NUMBERS)
        _set(body, path, new)
        notes.append(f"number {path}={new!r:.60}")
    elif op == "nesting":
        depth = rng.choice([20, 100, 600, 1200, 5000])
        path = rng.choice(_containers(body))
        target = _get(body, path)
        if isinstance(target, list):
            target.append(nested(rng, depth))
        else:
            target[rng.choice([*target, "nest"])] = nested(rng, depth)
        notes.append(f"nesting {path} depth={depth}")
    elif op == "huge_string":
        # Bytes; the last is over the gateway's 4 MiB limit.
        size = rng.choices([10_000, 100_000, 1_000_000, 4_300_000], weights=[60, 30, 6, 4])[0]
        strings = [p for p in leaves if isinstance(_get(body, p), str)] or [("model",)]
        path = rng.choice(strings)
        char = rng.choice("a\u00e9\U0001f600")
        _set(body, path, char * (size // len(char.encode())))
        notes.append(f"huge_string {path} ~{size}")
    elif op == "unicode":
        strings = [p for p in leaves if isinstance(_get(body, p), str)] or [("model",)]
        path = rng.choice(strings)
        if rng.random() < 0.3:
            text = rng.choice(['"\\ud800"', '"\\udfff x"', '"\\u0000"', '"\\uD83D\\uDE00"'])
            _set(body, path, Raw(text))
        else:
            _set(body, path, rng.choice(STRANGE_STRINGS))
        notes.append(f"unicode {path}")
    elif op == "missing" and leaves:
        path = rng.choice([(k,) for k in body] + leaves)
        parent = _get(body, path[:-1])
        del parent[path[-1]]
        notes.append(f"missing {path}")
    elif op == "extra":
        name = rng.choice(["extra", "x" * 200, "\u00e9t\u00e9", "__proto__", "constructor", "", "model "])
        name = name if rng.random() < 0.8 else rng.choice(["vllm_xargs", "guided_json", "priority", "cache_salt"])
        new = random_value(rng)
        containers = [p for p in _containers(body) if isinstance(_get(body, p), dict)]
        path = rng.choice(containers)
        _get(body, path)[name] = new
        notes.append(f"extra {path}+{name[:20]!r}={new!r:.60}")
    elif op == "duplicate":
        key = rng.choice(list(body) or ["model"])
        pairs = list(body.items())
        pairs.insert(rng.randrange(len(pairs) + 1), (key, random_value(rng)))
        notes.append(f"duplicate {key!r}")
        return Dup(pairs)
    return body


def case(seed: int, index: int, model: str, kinds: Iterable[str] = tuple(PATHS), max_tokens: int | None = None) -> Case:
    """The ``index``-th request of the run seeded ``seed``: deterministic, independent of other cases.

    ``max_tokens``: added to a chat or completions body that sets no length (a real engine would
    otherwise generate up to its context length).
    """
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choice(list(kinds))
    body: Any = valid_body(rng, kind, model)
    notes: list[str] = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if isinstance(body, Dup):
            break
        body = _mutate_tree(rng, body, notes)
    unbounded = isinstance(body, dict) and not {"max_tokens", "max_completion_tokens"} & set(body)
    if max_tokens is not None and kind != "embeddings" and unbounded:
        body["max_tokens"] = max_tokens
    text = dumps(body)
    content_type: str | None = "application/json"
    raw = text.encode("utf-8", "surrogatepass")
    whole = rng.random()
    if whole < 0.06:
        cut = rng.randrange(len(raw)) if raw else 0
        raw = raw[:cut]
        notes.append(f"truncated at {cut}")
    elif whole < 0.09:
        raw = rng.choice(
            [b"", b"null", b"[]", b"42", b'"text"', b"[" * 3000, b"{" * 3000, b"\xff\xfe{}", b"\xef\xbb\xbf{}"]
        )
        notes.append("document")
    elif whole < 0.11:
        at = rng.randrange(len(raw) + 1)
        raw = raw[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + raw[at:]
        notes.append(f"invalid utf-8 at {at}")
    if rng.random() < 0.08:
        content_type = rng.choice(
            [
                None,
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
                "*/*",
                "\u00e9",
            ]
        )
        notes.append(f"content-type {content_type!r}")
    headers: dict[str, str] = {}
    if rng.random() < 0.05:
        headers["idempotency-key"] = rng.choice(["k" * 5000, f"fuzz-{seed}-{index}", "a b", "\u00e9"])
    if rng.random() < 0.03:
        headers["x-inferstack-routing-policy"] = rng.choice(["session", "least_load", "bogus", ""])
    if rng.random() < 0.03:
        headers["cache-control"] = rng.choice(["no-cache", "no-store", "max-age=x"])
    if rng.random() < 0.03:
        headers["x-request-id"] = rng.choice(["r" * 1000, "id with spaces", ""])
    return Case(index, kind, raw, content_type, notes, headers)


# -- the rule -------------------------------------------------------------------------------------------


def openai_error_problem(data: bytes) -> str | None:
    """Why ``data`` is not an OpenAI error body, or None if it is one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return "not JSON"
    if not isinstance(doc, dict) or set(doc) != {"error"} or not isinstance(doc["error"], dict):
        return "not {'error': {...}}"
    err = doc["error"]
    if set(err) != {"message", "type", "param", "code"}:
        return f"error fields {sorted(err)}"
    if not isinstance(err["message"], str) or not isinstance(err["type"], str):
        return "message/type not strings"
    # OpenAI's schema: both a string or null (vLLM's own errors put the HTTP status, a number, in code).
    if not all(v is None or isinstance(v, str) for v in (err["param"], err["code"])):
        return "param/code not string or null"
    return None


def verdict(status: int, content_type: str, data: bytes) -> str | None:
    """What is wrong with this answer, or None."""
    if status >= 500:
        return f"status {status}"
    if status >= 400:
        problem = openai_error_problem(data)
        return None if problem is None else f"status {status}: {problem}"
    if content_type.startswith("text/event-stream"):
        for event in data.split(b"\n\n"):
            if event.startswith(b'data: {"error"'):
                problem = openai_error_problem(event[6:])
                if problem is not None:
                    return f"SSE error event: {problem}"
    return None


@dataclass
class Finding:
    case: Case
    problem: str
    status: int
    response: bytes


async def run(
    base_url: str,
    seed: int,
    count: int,
    model: str,
    *,
    api_key: str | None = None,
    kinds: Iterable[str] = tuple(PATHS),
    max_tokens: int | None = None,
    concurrency: int = 8,
    request_timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> list[Finding]:
    """Send ``count`` cases to ``base_url``; return every answer that breaks the rule."""
    kinds = tuple(kinds)
    findings: list[Finding] = []
    gate = asyncio.Semaphore(concurrency)
    auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base_url, timeout=request_timeout, limits=limits) as client:

        async def one(index: int) -> None:
            c = case(seed, index, model, kinds, max_tokens)
            headers = {**auth, **c.headers}
            if c.content_type is not None:
                headers["content-type"] = c.content_type
            raw_headers = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
            async with gate:
                try:
                    resp = await client.post(c.path, content=c.body, headers=raw_headers)
                except httpx.HTTPError as exc:
                    findings.append(Finding(c, f"transport error {type(exc).__name__}: {exc}", 0, b""))
                    return
            problem = verdict(resp.status_code, resp.headers.get("content-type", ""), resp.content)
            if problem is not None:
                findings.append(Finding(c, problem, resp.status_code, resp.content))
            if progress is not None:
                progress(index)

        await asyncio.gather(*(one(i) for i in range(count)))
    return findings


def report(findings: list[Finding], seed: int) -> str:
    """One line per kind of failure, with the smallest body that shows it and how to reproduce it."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.case.kind, f.problem), []).append(f)
    lines = [f"{len(findings)} bad answers in {len(groups)} groups (seed {seed}):"]
    for (kind, problem), items in sorted(groups.items()):
        smallest = min(items, key=lambda f: len(f.case.body))
        lines.append(f"- {kind}: {problem} x{len(items)}; smallest: {smallest.case.describe()}")
        lines.append(f"  answer: {smallest.response[:300]!r}")
        lines.append(f"  reproduce: python -m service.tests.schema_fuzz {seed} {smallest.case.index}")
    return "\n".join(lines)


if __name__ == "__main__":
    # Print one case: python -m service.tests.schema_fuzz SEED INDEX [MODEL]
    c = case(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "fake-model")
    print(c.describe(limit=10_000))
