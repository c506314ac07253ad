"""``python -m inferstack_fake_engine --port 8001 [--ttft 0.2 --itl 0.02] [--sim]``: see ``--help``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Sequence

from .config import Behaviour, EngineConfig
from .server import serve
from .sim import SimParams


def parse_args(argv: Sequence[str] | None = None) -> tuple[EngineConfig, str, int]:
    p = argparse.ArgumentParser(
        prog="python -m inferstack_fake_engine",
        description="A fake vLLM engine (test double); see docs/fake-engine.md.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="served model name; repeat for aliases (default: fake-model)",
    )
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--embedding-dim", type=int, default=8)
    p.add_argument("--record-requests", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    lora = p.add_argument_group("LoRA adapters (lora.py: slots, LRU, loads)")
    lora.add_argument("--max-loras", type=int, default=0, help="adapter slots; 0: no LoRA")
    lora.add_argument("--lora-module", action="append", default=[], metavar="NAME=PATH", help="registered at start")
    lora.add_argument(
        "--runtime-lora-updating",
        action="store_true",
        help="serve POST /v1/load_lora_adapter (as vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
    )
    lora.add_argument("--lora-load-delay", type=float, default=0.0, help="seconds per adapter load")
    timing = p.add_argument_group("plain-mode timing and faults (changeable at run time: POST /_fake/config)")
    timing.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    timing.add_argument("--itl", type=float, default=0.0, help="seconds between tokens")
    timing.add_argument("--output-tokens", type=int, default=32)
    timing.add_argument("--first-byte-delay", type=float, default=0.0)
    timing.add_argument("--error-status", type=int, default=0)
    timing.add_argument("--error-rate", type=float, default=1.0)
    timing.add_argument("--hang", action="store_true")
    timing.add_argument("--disconnect", action="store_true")
    timing.add_argument("--fail-after-tokens", type=int, default=-1)
    timing.add_argument("--fail-mode", choices=["close", "error_event", "stall"], default="close")
    sim = p.add_argument_group("simulator mode (a vLLM replica model)")
    sim.add_argument("--sim", action="store_true", help="pace tokens with the replica simulator")
    for f in dataclasses.fields(SimParams):
        sim.add_argument(f"--sim-{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    a = p.parse_args(argv)
    behaviour = Behaviour()
    behaviour.update(
        {
            "ttft": a.ttft,
            "itl": a.itl,
            "output_tokens": a.output_tokens,
            "first_byte_delay": a.first_byte_delay,
            "error_status": a.error_status,
            "error_rate": a.error_rate,
            "hang": a.hang,
            "disconnect": a.disconnect,
            "fail_after_tokens": a.fail_after_tokens,
            "fail_mode": a.fail_mode,
            "lora_load_delay": a.lora_load_delay,
        }
    )
    params = SimParams(**{f.name: getattr(a, f"sim_{f.name}") for f in dataclasses.fields(SimParams)})
    config = EngineConfig(
        models=tuple(a.models or ["fake-model"]),
        max_model_len=a.max_model_len,
        max_num_seqs=a.max_num_seqs,
        embedding_dim=a.embedding_dim,
        record_requests=a.record_requests,
        seed=a.seed,
        max_loras=a.max_loras,
        lora_modules=tuple((n, path) for n, _, path in (m.partition("=") for m in a.lora_module) if path),
        runtime_lora_updating=a.runtime_lora_updating,
        sim=params if a.sim else None,
        behaviour=behaviour,
    )
    return config, a.host, a.port


def main(argv: Sequence[str] | None = None) -> None:
    config, host, port = parse_args(argv)
    asyncio.run(serve(config, host, port))


if __name__ == "__main__":
    main()
