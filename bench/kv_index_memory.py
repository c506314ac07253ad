"""Memory of the KV-event index per block hash, measured with tracemalloc.

    .venv/bin/python bench/kv_index_memory.py [--blocks 200000] [--replicas 3] [--out FILE]

Fills a ``KVIndex`` through its real write path (decoded ``BlockStored`` batches of 16 blocks, each
block stored on ``--share`` replicas on average) and reports bytes per block hash: what
``INFERSTACK_KV_EVENTS__INDEX_CAPACITY`` costs. Deterministic (no timing), so valid on a busy machine.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tracemalloc
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_file import emit

from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.wire import decode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=200_000)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--share", type=float, default=1.5, help="replicas holding each block, on average")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(1)
    urls = [f"http://10.0.0.{i}:8000" for i in range(args.replicas)]
    hashes = [rng.getrandbits(64) for _ in range(args.blocks)]
    batches = []
    seq = dict.fromkeys(urls, 0)
    for start in range(0, args.blocks, 16):
        chunk = hashes[start : start + 16]
        holders = rng.sample(urls, min(args.replicas, max(1, round(rng.uniform(1, 2 * args.share - 1)))))
        for url in holders:
            event = {
                "type": "BlockStored",
                "block_hashes": chunk,
                "parent_block_hash": None,
                "token_ids": [0],
                "block_size": 16,
            }
            frames = [b"kv", seq[url].to_bytes(8, "big"), msgpack.packb([0.0, [event], 0])]
            seq[url] += 1
            batches.append((url, decode(frames)))
    index = KVIndex(capacity=args.blocks)
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for url, batch in batches:
        index.apply(url, batch, 0.0, 0.0)
    used = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    replica_entries = sum(len(v.held) for v in index.replicas.values())
    emit(
        {
            "command": "python bench/kv_index_memory.py " + shlex.join(sys.argv[1:]),
            "blocks": len(index),
            "replica_entries": replica_entries,
            "bytes": used,
            "bytes_per_block": round(used / len(index), 1),
            "mib_per_million_blocks": round(used / len(index) * 1e6 / 2**20, 1),
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
