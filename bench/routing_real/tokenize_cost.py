"""Cost and exactness of the ways the gateway can get a request's token ids (docs/routing.md).

    PYTHONPATH=service .venv-engine/bin/python bench/routing_real/tokenize_cost.py --engine URL --model DIR

Runs in the engine venv (it needs ``transformers``). For chat and completions prompts of several
lengths it times (a) the engine's ``/tokenize`` over HTTP (the gateway's ``tokenizer=engine``), (b)
tokenizing in-process with transformers (``AutoTokenizer`` + ``apply_chat_template``) and (c) the
gateway's own ``LocalTokenizer`` (``tokenizer=local``: ``tokenizers`` + the template in Jinja), and
says whether (b) and (c) give (a)'s ids. Timings are medians of ``--repeat`` calls; on a shared
machine they are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import urllib.request
from typing import Any

WORDS = ["river", "stone", "ledger", "harbour", "winter", "signal", "garden", "copper", "meadow", "lantern"]


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


def median_ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def main() -> int:
    from pathlib import Path

    from transformers import AutoTokenizer

    from inferstack.kvcache.local_tokenizer import LocalTokenizer

    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--model", required=True, help="the model directory (tokenizer files)")
    parser.add_argument("--served-name", default="tiny-llama")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    gateway = LocalTokenizer.load(Path(args.model))
    rng = random.Random(1)
    rows = []
    for words in (50, 500, 1500):
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        messages = [{"role": "system", "content": text}, {"role": "user", "content": "Which word comes first?"}]
        chat_body = {"model": args.served_name, "messages": messages, "add_generation_prompt": True}
        prompt_body = {"model": args.served_name, "prompt": text}
        engine_chat = post(args.engine + "/tokenize", chat_body)["tokens"]
        engine_prompt = post(args.engine + "/tokenize", prompt_body)["tokens"]

        def local_chat(messages: list[dict[str, str]] = messages) -> list[int]:
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(tok(rendered, add_special_tokens=False)["input_ids"])

        def local_prompt(text: str = text) -> list[int]:
            return list(tok(text)["input_ids"])

        def gateway_chat(body: dict[str, Any] = chat_body) -> list[int] | None:
            return gateway.token_ids(body, "chat")

        def gateway_prompt(body: dict[str, Any] = prompt_body) -> list[int] | None:
            return gateway.token_ids(body, "completions")

        rows.append(
            {
                "words": words,
                "prompt_tokens": len(engine_prompt),
                "chat_tokens": len(engine_chat),
                "engine_tokenize_ms": {
                    "chat": median_ms(lambda b=chat_body: post(args.engine + "/tokenize", b), args.repeat),
                    "completion": median_ms(lambda b=prompt_body: post(args.engine + "/tokenize", b), args.repeat),
                },
                "local_tokenizer_ms": {
                    "chat": median_ms(local_chat, args.repeat),
                    "completion": median_ms(local_prompt, args.repeat),
                },
                "gateway_local_tokenizer_ms": {
                    "chat": median_ms(gateway_chat, args.repeat),
                    "completion": median_ms(gateway_prompt, args.repeat),
                },
                "local_equals_engine": {
                    "chat": local_chat() == engine_chat,
                    "completion": local_prompt() == engine_prompt,
                },
                "gateway_local_equals_engine": {
                    "chat": gateway_chat() == engine_chat,
                    "completion": gateway_prompt() == engine_prompt,
                },
            }
        )
    load = [round(x, 1) for x in os.getloadavg()]
    print(
        json.dumps(
            {"command": "bench/routing_real/tokenize_cost.py", "load_average_1_5_15": load, "rows": rows}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
