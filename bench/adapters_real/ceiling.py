"""What a sequence of adapter requests allows at best on replicas with LRU adapter slots, computed offline.

    .venv/bin/python bench/adapters_real/ceiling.py [--zipf 0.8 1.0 1.2 1.5] [--seeds 1 2 3]

The engines (vLLM) keep ``slots`` adapters per replica and evict the least recently used one on a
load; a router only chooses the replica of each request, under a balance constraint (busiest replica
at most ``balance`` x the mean number of requests). From weakest to strongest policy:

- ``round_robin_lru``: what round robin costs;
- ``best_static_split_lru``: the best fixed split of the adapters over two replicas (every request of an
  adapter goes to its replica), chosen knowing the whole sequence;
- ``best_dynamic_lru``: the best any router can do with LRU engines: each request to either replica,
  chosen knowing the whole sequence (an exact dynamic programme over both replicas' LRU states and
  the requests sent to the first so far). No online router does better;
- ``best_dynamic_any_eviction``: the same, with engines that evict the best adapter instead of the LRU
  one (a lower bound for any engine policy);
- ``best_online_known_popularity``: an online router (no knowledge of the future) that knows each
  adapter's share of the sequence exactly and routes each request to minimise the expected loads to
  come, requests being independent draws (the optimal policy of that Markov decision process over both
  replicas' LRU states, by value iteration, discount 0.995); the balance is held by refusing a
  replica that would exceed ``balance`` x the running mean plus 5 requests (as the gateway's traffic
  bound does) or its share of the whole run. What a router without foresight can hope for;
- ``belady_all_slots``: Belady's optimum for one cache with every slot of the fleet (no balance, no
  replicas): the weakest bound.

``gateway_policy_simulated`` drives the gateway's own ``adapter_affinity`` profile (the real plugins and
placement record) over the sequence against simulated LRU engines, ``concurrency`` requests open at a
time (the oldest finishes when a new one starts): how close the policy gets, without engines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections import deque
from typing import Any

import numpy as np

BALANCE = 1.25
"""The goal's max/mean load."""


def zipf_sequence(names: list[str], requests: int, exponent: float, seed: int) -> list[str]:
    """``requests`` adapter names, the i-th most popular drawn with weight 1 / i**exponent."""
    return weighted_sequence(names, requests, [1 / (rank + 1) ** exponent for rank in range(len(names))], seed)


def weighted_sequence(names: list[str], requests: int, weights: list[float], seed: int) -> list[str]:
    """``requests`` adapter names drawn with ``weights`` (the i-th name's), independently."""
    return random.Random(seed).choices(names, weights=weights, k=requests)


def parse_mix(text: str, adapters: int) -> list[float]:
    """``32:16:8:4:2:1`` -> weights, one per adapter (the fake-engine bench's mix, for instance)."""
    weights = [float(w) for w in text.split(":")]
    if len(weights) != adapters or any(w <= 0 for w in weights):
        raise ValueError(f"--mix {text!r}: {adapters} positive weights separated by ':'")
    return weights


def lru_use(cache: list[str], name: str, slots: int) -> bool:
    """``name`` served from an LRU cache of ``slots`` adapters (vLLM's policy), oldest first; True if it loaded."""
    loaded = name not in cache
    if loaded:
        if len(cache) >= slots:
            cache.pop(0)
    else:
        cache.remove(name)
    cache.append(name)
    return loaded


def lru_loads(sequence: list[str], slots: int) -> int:
    """Loads of one LRU cache of ``slots`` adapters serving ``sequence`` in order, from empty."""
    cache: list[str] = []
    return sum(lru_use(cache, name, slots) for name in sequence)


def round_robin(sequence: list[str], replicas: int, slots: int) -> int:
    return sum(lru_loads(sequence[r::replicas], slots) for r in range(replicas))


def best_static_split(sequence: list[str], names: list[str], slots: int, balance: float = BALANCE) -> dict[str, Any]:
    best: tuple[int, float, list[str]] | None = None
    for mask in range(1, 2 ** len(names) - 1):
        first = {n for i, n in enumerate(names) if mask >> i & 1}
        a = [n for n in sequence if n in first]
        b = [n for n in sequence if n not in first]
        ratio = max(len(a), len(b)) / (len(sequence) / 2)
        loads = lru_loads(a, slots) + lru_loads(b, slots)
        if ratio <= balance and (best is None or loads < best[0]):
            best = (loads, round(ratio, 3), sorted(first))
    assert best is not None
    return {"loads": best[0], "max_over_mean": best[1], "first_replica": best[2]}


def _two_replica_optimum(sequence: list[int], states: list[tuple[int, ...]], step: Any, balance: float) -> int:
    """Fewest loads over every assignment of ``sequence`` to two replicas whose cache states move by
    ``step(state, adapter) -> [(next state, loads)]`` (several: the engine's choice), with the first
    replica's share of requests within the balance at the end. Exact: a dynamic programme over
    (first's state, second's state, requests sent to the first)."""
    index = {s: i for i, s in enumerate(states)}
    n, total = len(states), len(sequence)
    moves = {x: [(index[s], index[t], cost) for s in states for t, cost in step(s, x)] for x in sorted(set(sequence))}
    never = np.iinfo(np.int32).max // 2
    best = np.full((n, n, total + 1), never, np.int32)
    best[index[()], index[()], 0] = 0
    for x in sequence:
        after = np.full_like(best, never)
        for s, t, cost in moves[x]:
            np.minimum(after[t, :, 1:], best[s, :, :total] + cost, out=after[t, :, 1:])  # to the first
            np.minimum(after[:, t, :], best[:, s, :] + cost, out=after[:, t, :])  # to the second
        best = after
    most = int(balance * total / 2)
    return int(best[:, :, total - most : most + 1].min())


def best_dynamic(
    sequence: list[str], names: list[str], slots: int, any_eviction: bool, balance: float = BALANCE
) -> int:
    """The clairvoyant router's loads on two replicas: engines with LRU eviction, or with the best eviction."""
    ids = {n: i for i, n in enumerate(names)}
    seq = [ids[n] for n in sequence]
    if any_eviction:  # a cache is a set; on a load the engine may drop any adapter
        states = [tuple(c) for k in range(slots + 1) for c in itertools.combinations(range(len(names)), k)]

        def step(s: tuple[int, ...], x: int) -> list[tuple[tuple[int, ...], int]]:
            if x in s:
                return [(s, 0)]
            if len(s) < slots:
                return [(tuple(sorted((*s, x))), 1)]
            return [(tuple(sorted((*(y for y in s if y != drop), x))), 1) for drop in s]

    else:  # a cache is an LRU order, least recent first
        states = _lru_states(len(names), slots)

        def step(s: tuple[int, ...], x: int) -> list[tuple[tuple[int, ...], int]]:
            return [_lru_step(s, x, slots)]

    return _two_replica_optimum(seq, states, step, balance)


def _lru_states(adapters: int, slots: int) -> list[tuple[int, ...]]:
    """Every LRU cache of at most ``slots`` of ``adapters`` adapters, least recently used first."""
    return [p for k in range(slots + 1) for p in itertools.permutations(range(adapters), k)]


def _lru_step(s: tuple[int, ...], x: int, slots: int) -> tuple[tuple[int, ...], int]:
    if x in s:
        return (*(y for y in s if y != x), x), 0
    return (*(s if len(s) < slots else s[1:]), x), 1


def best_online(
    sequence: list[str], names: list[str], slots: int, balance: float = BALANCE, discount: float = 0.995
) -> dict[str, Any]:
    """The online router that knows the popularity (see the module's docstring): loads and balance."""
    ids = {n: i for i, n in enumerate(names)}
    seq = [ids[n] for n in sequence]
    share = np.array([seq.count(i) for i in range(len(names))], float) / len(seq)
    states = _lru_states(len(names), slots)
    index = {s: i for i, s in enumerate(states)}
    nxt = np.array([[index[_lru_step(s, x, slots)[0]] for s in states] for x in range(len(names))])
    cost = np.array([[_lru_step(s, x, slots)[1] for s in states] for x in range(len(names))])
    value = np.zeros((len(states), len(states)))  # (first's state, second's state) -> expected loads to come
    for _ in range(1000):
        q = np.zeros_like(value)
        for x in range(len(names)):
            first = cost[x][:, None] + discount * value[nxt[x], :]
            second = cost[x][None, :] + discount * value[:, nxt[x]]
            q += share[x] * np.minimum(first, second)
        done = np.abs(q - value).max() < 1e-6
        value = q
        if done:
            break
    a = b = index[()]
    sent = [0, 0]
    loads = 0
    for i, x in enumerate(seq):
        to_first = cost[x][a] + discount * value[nxt[x][a], b]
        to_second = cost[x][b] + discount * value[a, nxt[x][b]]
        choice = 0 if to_first <= to_second else 1
        if sent[choice] + 1 > min(balance * (i + 1) / 2 + 5, balance * len(seq) / 2):
            choice = 1 - choice
        sent[choice] += 1
        if choice == 0:
            loads, a = loads + int(cost[x][a]), int(nxt[x][a])
        else:
            loads, b = loads + int(cost[x][b]), int(nxt[x][b])
    return {"loads": loads, "max_over_mean": round(max(sent) / (len(seq) / 2), 3)}


def belady(sequence: list[str], slots: int) -> int:
    cache: set[str] = set()
    loads = 0
    for i, name in enumerate(sequence):
        if name not in cache:
            loads += 1
            if len(cache) >= slots:
                rest = sequence[i + 1 :]
                cache.remove(max(cache, key=lambda n: rest.index(n) if n in rest else len(rest)))
            cache.add(name)
    return loads


def simulate_gateway(
    sequence: list[str], names: list[str], slots: int, concurrency: int, load_factor: float, traffic_factor: float
) -> dict[str, Any]:
    """The gateway's ``adapter_affinity`` (its real plugins) against two simulated LRU engines."""
    from inferstack.catalog import AdapterRoute, AdapterVersion, Catalog, LoraSpec
    from inferstack.scheduling import EndpointLoad, RoutingRequest, make_policy
    from inferstack.scheduling.plugins.adapter import Adapter
    from inferstack.upstream.adapters import AdapterPlacement

    catalog = Catalog(
        models=frozenset({"base"}),
        aliases={},
        adapters={n: AdapterRoute("base", ((n, 100),)) for n in names},
        versions={n: AdapterVersion(n, "base", f"/adapters/{n}") for n in names},
        lora={"base": LoraSpec(slots, "")},
    )
    where = AdapterPlacement(catalog)
    profile = make_policy("adapter_affinity", adapter_load_factor=load_factor, adapter_traffic_factor=traffic_factor)
    scorer = profile.plugin("adapter")
    assert isinstance(scorer, Adapter)
    scorer.attach(where)
    urls = ("http://r0", "http://r1")
    engines: dict[str, list[str]] = {u: [] for u in urls}
    open_: deque[tuple[str, str]] = deque()
    in_flight = dict.fromkeys(urls, 0)
    served = dict.fromkeys(urls, 0)
    loads = 0
    for adapter in sequence:
        if len(open_) >= concurrency:
            url, done = open_.popleft()
            in_flight[url] -= 1
            where.done(url, done)
        url = profile.pick(RoutingRequest(adapter, ""), [EndpointLoad(u, in_flight[u]) for u in urls]).url
        where.sent(url, adapter)
        in_flight[url] += 1
        served[url] += 1
        open_.append((url, adapter))
        loads += lru_use(engines[url], adapter, slots)
    return {"loads": loads, "max_over_mean": round(max(served.values()) / (len(sequence) / 2), 3)}


def bounds(sequence: list[str], names: list[str], replicas: int, slots: int) -> dict[str, Any]:
    """Every bound for ``sequence`` (the two-replica ones only for two replicas)."""
    out: dict[str, Any] = {"round_robin_lru": round_robin(sequence, replicas, slots)}
    if replicas == 2:
        out["best_static_split_lru"] = best_static_split(sequence, names, slots)
        out["best_dynamic_lru"] = best_dynamic(sequence, names, slots, any_eviction=False)
        out["best_dynamic_any_eviction"] = best_dynamic(sequence, names, slots, any_eviction=True)
        out["best_online_known_popularity"] = best_online(sequence, names, slots)
    out["belady_all_slots"] = belady(sequence, replicas * slots)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zipf", type=float, nargs="+", default=[0.8, 1.0, 1.2, 1.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--adapters", type=int, default=6)
    parser.add_argument("--requests", type=int, default=240)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    names = [f"bench-{i}" for i in range(args.adapters)]
    rows = []
    for exponent in args.zipf:
        for seed in args.seeds:
            sequence = zipf_sequence(names, args.requests, exponent, seed)
            found = bounds(sequence, names, 2, args.slots)
            found["gateway_policy_simulated"] = simulate_gateway(
                sequence, names, args.slots, args.concurrency, 2.0, 1.2
            )
            rows.append({"zipf": exponent, "seed": seed, **found})
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
