"""The event loop's longest stall while the gateway takes a large KV event message, A/B.

    .venv/bin/python bench/kv_event_stall.py [--source LABEL=REF ...] [--rounds 3] [--out F]

Each ``--source`` (``.``, this tree, by default; or a git ref, extracted as bench/ab_bench.py does)
runs in its own process, the sources taking turns round after round. A process runs the gateway's
own subscriber (``KVEventHub``, a real ZMQ SUB over ipc) fed by a PUB socket in the same loop, and a
coroutine that yields (``asyncio.sleep(0)``) in a loop and notes the longest time between two of its
turns: the longest anything else on the loop (a request, a stream's chunk, a timer) waited. Cases:

- ``hashes1``: one message of 1,000,000 one-byte hashes (no engine's shape: the most hashes a MiB holds);
- ``hashes64``: one message just under the 1 MiB bound, one ``BlockStored`` of 116,000 64-bit
  hashes (vLLM's shape, ``VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES=1``);
- ``gap``: after ``hashes64``, a message whose sequence number skips one: the replica's 116,000
  blocks are dropped (``KVIndex._forgetting``, in steps);
- ``leave``: the view filled again (116,000 blocks), the replica leaves (``KVEventHub.set_urls``,
  called from a callback of its own, as discovery's).

Figures are wall times on a shared machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
URL = "http://127.0.0.1:8000"
CASES = ("hashes1", "hashes64", "gap", "leave")


def _stored(hashes: list[int]) -> dict[str, Any]:
    event = {"type": "BlockStored", "block_hashes": hashes, "parent_block_hash": None, "token_ids": [0]}
    return event | {"block_size": 1, "lora_id": None, "medium": "GPU"}


def _message(seq: int, hashes: list[int], marker: int) -> list[bytes]:
    """``hashes`` stored, then ``marker`` (a block of its own, last: the message is applied when it is)."""
    events = [_stored(hashes), _stored([marker])]
    return [b"kv", seq.to_bytes(8, "big"), msgpack.packb([time.time(), events, 0])]


async def _child() -> dict[str, Any]:
    import zmq
    import zmq.asyncio
    from prometheus_client import CollectorRegistry

    from inferstack.kvcache.index import KVIndex
    from inferstack.kvcache.metrics import KVMetrics
    from inferstack.kvcache.subscriber import KVEventHub

    rng = random.Random(1)
    big64 = [rng.getrandbits(64) for _ in range(116_000)]
    messages = {"hashes64": big64, "hashes1": [1] * 1_000_000}
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{tmp}/kv.ipc"
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.PUB)
        pub.bind(endpoint)
        index = KVIndex(capacity=2_000_000)
        hub = KVEventHub(index, KVMetrics(CollectorRegistry()), endpoints={URL: endpoint})

        def holds(block: int) -> Callable[[], bool]:
            return lambda: index.match([block], [URL]) == {URL: 1}

        hub.set_urls([URL])
        seq = 0
        while len(index) == 0:  # the slow joiner: PUB drops until the subscription is in
            await pub.send_multipart(_message(seq, [], 1 << 63))
            seq += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # let the warm-up messages drain (not measured)
        figures: dict[str, Any] = {}
        for case in CASES:
            marker = (1 << 62) + seq
            if case == "leave":  # the view refilled (not measured), then the replica leaves
                await pub.send_multipart(_message(seq, messages["hashes64"], marker))
                seq += 1
                await _stalls(holds(marker))
                asyncio.get_running_loop().call_soon(hub.set_urls, [])
                figures[case] = await _stalls(lambda: URL not in index.replicas)
                continue
            if case == "gap":
                seq += 1  # one missing: the replica's view is dropped before this message is applied
            frames = _message(seq, [] if case == "gap" else messages[case], marker)
            await pub.send_multipart(frames)
            figures[case] = {"bytes": len(frames[2])} | await _stalls(holds(marker))
            seq += 1
        await hub.close()
        pub.close(linger=0)
        ctx.term()
    return figures


async def _stalls(done: Callable[[], bool]) -> dict[str, Any]:
    """Turns of the loop until ``done``: the longest time between two, and the time to ``done``."""
    stall, turns = 0.0, 0
    start = previous = time.perf_counter()
    while not done():
        await asyncio.sleep(0)
        now = time.perf_counter()
        stall, previous, turns = max(stall, now - previous), now, turns + 1
        if now - start > 30:
            raise SystemExit("not done in 30 s")
    total = time.perf_counter() - start
    return {"longest_stall_ms": round(stall * 1000, 1), "applied_ms": round(total * 1000, 1), "loop_turns": turns}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", action="append", help="LABEL=SOURCE: '.' or a git ref (default: this tree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_child())))
        return 0
    sys.path.insert(0, str(HERE))
    from ab_bench import _commit, source_dir
    from results_file import emit

    sources = dict(s.split("=", 1) for s in (args.source or ["tree=."]))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in sources}
    loads = []
    for _ in range(args.rounds):
        for label, source in sources.items():
            env = {**os.environ, "PYTHONPATH": str(source_dir(source))}
            out = subprocess.run(
                [sys.executable, __file__, "--child"], env=env, check=True, capture_output=True, text=True
            ).stdout
            runs[label].append(json.loads(out))
            loads.append(os.getloadavg()[0])
    result = {
        "bench": "kv_event_stall",
        "sources": {label: {"spec": spec, "commit": _commit(spec)} for label, spec in sources.items()},
        "rounds": args.rounds,
        "load_average_1m": [round(x, 2) for x in loads],
        "median": {
            label: {
                case: {key: statistics.median(r[case][key] for r in rs) for key in ("longest_stall_ms", "applied_ms")}
                | {"bytes": rs[0][case].get("bytes", 0)}
                for case in CASES
            }
            for label, rs in runs.items()
        },
        "runs": runs,
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
