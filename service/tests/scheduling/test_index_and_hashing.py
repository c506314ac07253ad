"""The prefix index evicts least-recently-used blocks, tails before heads; rendezvous hashing is the
same in every gateway process (never Python's per-process ``hash()``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from inferstack.scheduling import PrefixIndex, RoutingRequest, make_policy, prefix_chain, rendezvous_order

from .test_prefix_affinity import URLS, idle

SERVICE = Path(__file__).resolve().parents[2]


def chain(text: str, blocks: int) -> list[bytes]:
    return prefix_chain("m", text * 16 * blocks, 16, blocks)


def test_the_index_evicts_the_least_recently_used_prefix_not_the_oldest() -> None:
    index = PrefixIndex(capacity=4)
    a, b, c = chain("a", 2), chain("b", 2), chain("c", 2)
    index.record(a, "r1")
    index.record(b, "r2")
    index.record(a, "r1")  # a is used again: b is now the least recently used
    index.record(c, "r3")
    assert len(index) == 4
    assert index.match(a, ["r1"]) == {"r1": 2}
    assert index.match(b, ["r2"]) == {"r2": 0}
    assert index.match(c, ["r3"]) == {"r3": 2}


def test_the_index_evicts_a_chains_tail_before_its_head() -> None:
    # A prefix is matched from its first block: losing the head would make the whole chain useless.
    index = PrefixIndex(capacity=3)
    long = chain("x", 3)
    index.record(long, "r1")
    index.record(chain("y", 1), "r2")
    assert index.match(long, ["r1"]) == {"r1": 2}


# Each script prints, as JSON, what one gateway process would decide.
RENDEZVOUS = "print(json.dumps([rendezvous_order(f'key-{i}'.encode(), URLS) for i in range(50)]))"
HOMES = (
    "p = make_policy('prefix_affinity')\n"
    "print(json.dumps([p.pick(RoutingRequest('m', f'[tenant {t}] ' * 200), [EndpointLoad(u, 0) for u in URLS]).url"
    " for t in range(20)]))"
)


def in_another_process(script: str, hash_seed: str) -> Any:
    prelude = (
        "import json, sys\n"
        "from inferstack.scheduling import EndpointLoad, RoutingRequest, make_policy, rendezvous_order\n"
        "URLS = json.loads(sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(SERVICE)}
    out = subprocess.run(
        [sys.executable, "-c", prelude + script, json.dumps(URLS)], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_rendezvous_order_is_the_same_in_processes_with_different_hash_seeds() -> None:
    here = [rendezvous_order(f"key-{i}".encode(), URLS) for i in range(50)]
    assert in_another_process(RENDEZVOUS, "1") == in_another_process(RENDEZVOUS, "2") == here
    assert len({order[0] for order in here}) > 1  # the keys do spread


def test_a_prefix_has_the_same_home_in_every_gateway_process() -> None:
    p = make_policy("prefix_affinity")
    here = [p.pick(RoutingRequest("m", f"[tenant {t}] " * 200), idle()).url for t in range(20)]
    assert in_another_process(HOMES, "3") == in_another_process(HOMES, "4") == here


def test_a_block_is_believed_held_by_its_four_most_recent_replicas_only() -> None:
    index = PrefixIndex()  # as the prefix scorer builds it: replicas_per_block at its default
    chain = prefix_chain("m", "x" * 512, 256, 2)
    urls = [f"http://r{i}" for i in range(5)]
    for url in urls:
        index.record(chain, url)
    assert index.match(chain, urls) == {urls[0]: 0, **dict.fromkeys(urls[1:], 2)}
