"""Post-deploy smoke test: what a client of the gateway does first, with the `openai` client.

    python .github/scripts/smoke.py --base-url http://127.0.0.1:8080/v1 [--model NAME]

API key from $INFERSTACK_API_KEY (any string when auth is off; the same name loadtests/ reads). Checks, in order:
  1. /v1/models lists the model (the first listed when --model is not given);
  2. a chat completion returns text and a `usage` block;
  3. a streamed chat completion delivers content chunks and, last, `usage`.
With --deadline N the checks are retried until they all pass or N seconds have gone by: right
after a rollout an engine may still be scaling from zero. Exits 0 when all pass, 1 with one line
per failure (of the last attempt) otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import openai

PROMPT = [{"role": "user", "content": "Say hello in five words."}]


def _check_models(client: openai.OpenAI, wanted: str | None) -> str:
    ids = [m.id for m in client.models.list()]
    if not ids:
        raise AssertionError("/v1/models lists no model")
    if wanted is not None and wanted not in ids:
        raise AssertionError(f"/v1/models lists {ids}, not {wanted!r}")
    return wanted or ids[0]


def _check_chat(client: openai.OpenAI, model: str, max_tokens: int) -> None:
    resp = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=max_tokens)
    text = resp.choices[0].message.content if resp.choices else None
    if not text:
        raise AssertionError("chat completion returned no text")
    if resp.usage is None or resp.usage.completion_tokens <= 0:
        raise AssertionError(f"chat completion has no usable usage block: {resp.usage!r}")


def _check_stream(client: openai.OpenAI, model: str, max_tokens: int) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    content_chunks, usage = 0, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            content_chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
    if content_chunks == 0:
        raise AssertionError("stream delivered no content")
    if usage is None:
        raise AssertionError("stream ended without a usage chunk")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True, help="the gateway's OpenAI base URL, ending in /v1")
    p.add_argument("--model", help="model to test (default: the first one /v1/models lists)")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    p.add_argument("--deadline", type=float, default=0.0, help="retry failed checks for this many seconds")
    p.add_argument("--retry-interval", type=float, default=10.0, help="seconds between attempts")
    args = p.parse_args(argv)

    client = openai.OpenAI(
        base_url=args.base_url,
        api_key=os.environ.get("INFERSTACK_API_KEY", "none"),
        timeout=args.timeout,
        # With a deadline, the loop below retries whole passes; the client's own retries (with
        # their backoff) would only stretch one pass.
        max_retries=0 if args.deadline > 0 else 2,
    )
    deadline = time.monotonic() + args.deadline
    while True:
        failures = _attempt(client, args.model, args.max_tokens)
        if not failures:
            return 0
        for line in failures:
            print(line, file=sys.stderr)
        if time.monotonic() + args.retry_interval > deadline:
            return 1
        print(f"retrying in {args.retry_interval:.0f}s", file=sys.stderr)
        time.sleep(args.retry_interval)


def _attempt(client: openai.OpenAI, wanted: str | None, max_tokens: int) -> list[str]:
    """One pass over the checks; the failures, empty when all passed."""
    try:
        model = _check_models(client, wanted)
    except (AssertionError, openai.OpenAIError) as exc:
        return [f"FAIL models: {exc}"]
    failures = []
    for name, check in (("chat", _check_chat), ("stream", _check_stream)):
        started = time.monotonic()
        try:
            check(client, model, max_tokens)
            print(f"ok   {name} ({model}, {time.monotonic() - started:.2f}s)")
        except (AssertionError, openai.OpenAIError) as exc:
            failures.append(f"FAIL {name}: {exc}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
