"""One routing policy's run of the plan through a ``deployment.Deployment``: what the client does.

For each policy the engines' prefix caches are emptied, the same turns are sent along the same paths
(``workload.routes``) by ``--concurrency`` workers (``workload.TurnQueue``), and one engine is
restarted when ``--restart-at`` of the turns have started. Each turn's record notes what every
running replica held at the send (the oracle), the engine's reported cached tokens and the client's
TTFT; ``measure`` turns them into figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
from deployment import MODEL, Deployment, engine_args, start_engine, stop_engine
from measure import (
    COUNTERS,
    TIMINGS,
    Counters,
    Record,
    counters,
    decisions,
    metrics,
    per_replica,
    policy_report,
    ready_replicas,
)
from turn_log import Removals
from workload import Shape, TurnQueue, conversations, order, routes

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack.kvcache.tokenize import engine_token_ids, tokenize_body

TOKENIZE_TIMEOUT = 60.0  # seconds, per /tokenize call
CLEAR_TIMEOUT = 30.0  # seconds for the engines' AllBlocksCleared events to reach the bench
REJOIN_TIMEOUT = 120.0  # seconds for every gateway to count a restarted replica ready again


class Bench:
    def __init__(self, session: aiohttp.ClientSession, deployment: Deployment, args: argparse.Namespace) -> None:
        self.session, self.deployment, self.a = session, deployment, args
        self.live = max(args.live, args.concurrency)
        """Conversations under way at once (``--live``; 0 means one per worker)."""
        self.urls = deployment.urls
        self.index = deployment.index
        self.removals: dict[str, Removals] = {}
        shape = Shape(
            args.tenants, args.conversations, args.turns, args.system_words, args.user_words, args.answer_words
        )
        self.convs = conversations(shape, args.seed)
        self.plan = routes(self.convs, args.gateways, args.replicas, args.direct_share, args.seed)
        self.tokens: dict[tuple[int, int], list[int]] = {}
        self.system_tokens: list[int] = []
        self.down: set[str] = set()
        self.phase = "all_up"
        self.records: dict[str, list[Record]] = {}

    async def token_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """``messages`` as the engine renders and tokenizes them (the ids it will hash)."""
        body = tokenize_body(MODEL, {"messages": messages}, "chat")
        assert body is not None
        tokens = await engine_token_ids(self.session, self.urls[0], body, TOKENIZE_TIMEOUT)
        assert tokens is not None, "the engine's /tokenize failed"
        return tokens

    async def tokenize_all(self) -> None:
        """Every turn's token ids, once (the engine's own template: the ids it will hash)."""
        sem = asyncio.Semaphore(4)

        async def one(key: tuple[int, int]) -> None:
            async with sem:
                self.tokens[key] = await self.token_ids(self.convs[key[0]][key[1]])

        await asyncio.gather(*(one(key) for key in self.plan))
        # Each tenant's system prompt alone, as the engine renders it: what one replica's cache is held against.
        for conv in self.convs[:: self.a.conversations]:
            self.system_tokens.append(len(await self.token_ids(conv[0][:1])))

    async def reset(self) -> None:
        for url in self.urls:
            async with self.session.post(url + "/reset_prefix_cache") as resp:
                assert resp.status == 200, await resp.text()
        # vLLM queues AllBlocksCleared until its next step: a request shorter than a block flushes it.
        for url in self.urls:
            payload = {"model": MODEL, "prompt": "flush", "max_tokens": 1}
            async with self.session.post(url + "/v1/completions", json=payload) as resp:
                await resp.read()
        end = time.monotonic() + CLEAR_TIMEOUT
        while any(self.index.replicas[u].held for u in self.urls):
            assert time.monotonic() < end, "engines' AllBlocksCleared events did not arrive"
            await asyncio.sleep(0.1)

    def held(self, tokens: list[int]) -> dict[str, int]:
        """Prompt tokens each running replica holds now, by the engines' events (the oracle takes the most)."""
        out = {}
        for url in self.urls:
            size = self.index.block_size(url)
            if size and url not in self.down:
                held = self.index.match(prompt_block_hashes(tokens, size), [url])[url] * size
                out[url] = min(held, len(tokens) - 1)  # vLLM always computes the last token
        return out

    async def gateways_route_to_all(self) -> None:
        """Until every gateway counts every replica ready again (its health checks saw the restart)."""
        end = time.monotonic() + REJOIN_TIMEOUT
        while True:
            ready = await ready_replicas(self.session, self.deployment.gateways)
            if all(r >= len(self.urls) for r in ready):
                return
            assert time.monotonic() < end, f"gateways see {ready} ready replicas"
            await asyncio.sleep(0.5)

    async def restart(self, i: int, before: Counters, lost: dict[str, Counters]) -> dict[str, Any]:
        """Stop engine ``i`` (SIGTERM, as Kubernetes does) and start it again on the same port."""
        engines, url = self.deployment.engines, self.urls[i]
        pre = counters(await metrics(self.session, url))
        lost[url] = {k: pre[k] - before[k] for k in COUNTERS + TIMINGS}  # the new process's start at 0
        self.down.add(url)
        self.phase = "one_down"
        started = time.monotonic()
        await asyncio.to_thread(stop_engine, engines[i])
        self.index.leave(url)  # the oracle: its cache is gone (the gateways learn it from the events)
        self.index.join(url)
        port = int(url.rsplit(":", 1)[1])
        stack, extra = self.deployment.stack, engine_args(self.a)
        engines[i] = await asyncio.to_thread(start_engine, stack, self.a.kv_blocks, port, extra)
        await self.gateways_route_to_all()
        self.down.discard(url)
        self.phase = "back_cold"
        return {"replica": url, "seconds_down": round(time.monotonic() - started, 1)}

    async def turn(self, policy: str, c: int, t: int, records: list[Record]) -> None:
        route, tokens = self.plan[(c, t)], self.tokens[(c, t)]
        record: Record = {
            "id": f"{policy}/{c}/{t}",
            "phase": self.phase,
            "direct": route.gateway is None,
            "prompt": len(tokens),
        }
        headers = {}
        if route.gateway is not None:
            record["sent"] = time.time()
            record["held"] = self.held(tokens)
            record["oracle"] = max(record["held"].values(), default=0)
            url = self.deployment.gateways[route.gateway].url
            headers = {"x-inferstack-routing-policy": policy, "x-request-id": record["id"]}
        else:
            assert route.engine is not None
            up = [u for u in self.urls if u not in self.down]  # a Service routes to ready endpoints only
            url = self.urls[route.engine] if self.urls[route.engine] in up else up[route.engine % len(up)]
        payload = {
            "model": MODEL,
            "messages": self.convs[c][t],
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        first = None
        try:
            async with self.session.post(url + "/v1/chat/completions", json=payload, headers=headers) as resp:
                if resp.status != 200:
                    record["error"] = f"{resp.status} {(await resp.text())[:200]}"
                async for line in resp.content:
                    if not line.startswith(b"data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        record["error"] = str(chunk["error"])[:200]
                    if first is None and any(
                        (ch.get("delta") or {}).get("content") for ch in chunk.get("choices") or []
                    ):
                        first = time.perf_counter() - started
                        if route.gateway is not None:  # what survived the wait, for the survival oracle
                            record["held_at_first_token"] = self.held(tokens)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        record["prompt_tokens"] = usage["prompt_tokens"]
                        record["cached"] = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        except aiohttp.ClientError as e:
            record["error"] = repr(e)[:200]
        record["ttft"] = first if first is not None else time.perf_counter() - started
        records.append(record)

    async def run_policy(self, policy: str) -> dict[str, Any]:
        gateways = self.deployment.gateways
        await self.gateways_route_to_all()
        await self.reset()
        self.index.removals.clear()
        before = {u: counters(await metrics(self.session, u)) for u in self.urls}
        decided = await decisions(self.session, gateways)
        lost: dict[str, Counters] = {}
        records: list[Record] = []
        ready = TurnQueue([len(conv) for conv in self.convs], order(len(self.convs), self.a.seed), self.live)
        turns = sum(len(conv) for conv in self.convs)
        restart_at, rejoin_at = int(self.a.restart_at * turns), int(self.a.rejoin_at * turns)
        restart: asyncio.Task[dict[str, Any]] | None = None
        started = 0
        self.phase = "all_up"

        async def worker() -> None:
            # Each worker sends the front ready turn (TurnQueue: with --live at its default, one
            # conversation per worker, its turns back to back).
            nonlocal started, restart
            while (turn := ready.take()) is not None:
                c, t = turn
                if self.a.restart_at < 1 and started == restart_at and restart is None:
                    restart = asyncio.create_task(
                        self.restart(self.a.restart_replica, before[self.urls[self.a.restart_replica]], lost)
                    )
                if restart is not None and started >= rejoin_at and not restart.done():
                    await asyncio.wait([restart])
                started += 1
                await self.turn(policy, c, t, records)
                ready.answered(c, t)

        clock = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(self.a.concurrency)))
        restarted = await restart if restart is not None else None
        elapsed = time.monotonic() - clock
        after = {u: counters(await metrics(self.session, u)) for u in self.urls}
        now = await decisions(self.session, gateways)
        self.records[policy] = records
        self.removals[policy] = dict(self.index.removals)
        return policy_report(policy, records, per_replica(before, after, lost), decided, now, elapsed, restarted)
