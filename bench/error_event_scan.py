"""What looking for an engine's error event costs on the relay's fast path, per chunk.

    .venv/bin/python bench/error_event_scan.py [--out bench/results/error_event_scan.json]

``sse.whole_events`` sends a chunk holding ``data: {"error"`` to the event-by-event path, where the
event is rewritten in OpenAI's vocabulary (session 17); every chunk pays for the look. This times
``whole_events`` on a typical vLLM text chunk, and the added test alone, with ``timeit`` (the best
of five repeats, the lambda's call included in both).
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable
from pathlib import Path

from results_file import emit

from inferstack.relay.sse import ERROR_EVENT, whole_events

CHUNK = (
    b'data: {"id":"chatcmpl-1f0f88aab321ac450000000000000002","object":"chat.completion.chunk",'
    b'"created":1796388951,"model":"tiny-llama","choices":[{"index":0,"delta":{"content":"mmed"},'
    b'"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'
)
N = 2_000_000


def best_ns(call: Callable[[], object]) -> float:
    return min(timeit.repeat(call, number=N, repeat=5)) / N * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    chunk = CHUNK  # a local: each lambda below reads it as the relay reads its argument
    result = {
        "command": "python bench/error_event_scan.py" + (f" --out {args.out}" if args.out else ""),
        "chunk_bytes": len(chunk),
        "whole_events_ns": round(best_ns(lambda: whole_events(chunk)), 1),
        "error_event_test_ns": round(best_ns(lambda: chunk.partition(ERROR_EVENT)[1]), 1),
        "empty_call_ns": round(best_ns(lambda: None), 1),
        "load_average": list(os.getloadavg()),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
