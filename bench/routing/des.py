"""A discrete-event simulation of a gateway in front of a fleet of simulated vLLM replicas.

Virtual time, one process, no sockets: the replicas are ``pool.PoolReplica`` (the fake engine's
replica model with vLLM v1's single KV block pool: the prefix cache is the pool's free, still-hashed
blocks, so running requests crowd it out; see pool.py) and the routing decisions are made by the
gateway's own ``inferstack.scheduling`` policies. What the simulated gateway knows matches the real
one: its own in-flight count per replica (exact), and the engines' waiting queue and KV usage as of
the last scrape (every ``scrape_interval`` seconds).

The deployment's conditions are settings (all off by default): ``gateways`` gateway replicas, each
with its own policy instance (its own ``prefix_affinity`` memory and in-flight counts) while
``precise_prefix``'s index is shared (every gateway reads the same events), with each routed turn
sent to one of them at random; ``direct_share`` of the turns sent straight to a random replica, past
every gateway; and a ``restart``: a replica stops taking requests at a given time, drains, and returns
``down`` seconds later with an empty cache (its KV events say so; the approximate indexes are not told).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pool import PoolReplica
from workload import Conversation, Workload

from inferstack.kvcache.blocks import prompt_block_hashes
from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.wire import AllBlocksCleared, Batch, BlockRemoved, BlockStored
from inferstack.scheduling import EndpointLoad, Profile, RoutingRequest, render_chat_prompt
from inferstack.scheduling.plugins.precise_prefix import PrecisePrefix
from inferstack_fake_engine.sim import SimParams, SimSequence, block_hashes
from inferstack_fake_engine.text import count_tokens, output_text, render_chat

MODEL = "bench-model"


@dataclass(frozen=True)
class RunSettings:
    replicas: int = 8
    conversation_rate: float = 1.0
    """New conversations per second (Poisson)."""
    warmup: float = 60.0
    duration: float = 300.0
    """Measured seconds, after the warm-up."""
    scrape_interval: float = 0.5
    seed: int = 1
    gateways: int = 1
    direct_share: float = 0.0
    """Share of turns sent straight to a random replica (not through any gateway)."""
    restart: tuple[int, float, float] | None = None
    """(replica, at, down): the replica leaves at virtual second ``at`` and returns ``down`` s later, cold."""
    concurrency: int = 0
    """0: conversations arrive as a Poisson process (``conversation_rate``). n: a closed loop, as
    ``bench/routing_real``'s client: n conversations at once, each turn sent as soon as the previous
    one is answered (no think time) and the next conversation started as soon as one ends."""
    live: int = 0
    """With ``concurrency``: how many conversations are under way at once (0: ``concurrency``). Above
    it, a conversation's next turn joins the back of a queue of ready turns when its answer arrives
    and each free worker takes the front one, so a conversation waits for the others' turns as a user
    reads and types: many histories live, few requests in flight (``bench/routing_real``'s ``--live``)."""
    sticky_gateway: bool = False
    """Every turn of a conversation through the same gateway (a client keeping its connection), not a
    random one per turn (a Service spreading each new connection)."""
    engine_delay: float = 0.0
    """Seconds between a turn's routing decision and its arrival in the engine's queue (the gateway's
    own time, its tokenize call, the hop): meanwhile the replica may evict what the decision relied on."""


@dataclass
class _Turn:
    conv: Conversation
    index: int
    arrival: float
    replica: int
    output: int
    gateway: int | None
    first_token: float | None = None
    blocks: list[bytes] = field(default_factory=list)
    seq: SimSequence | None = None
    oracle: int = 0
    """Routed turns: the most prompt tokens any running replica held when it was sent."""


@dataclass
class RunResult:
    policy: str
    ttft: list[float] = field(default_factory=list)
    output_tokens: int = 0
    completed: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    in_flight_samples: list[list[int]] = field(default_factory=list)
    running_samples: list[list[int]] = field(default_factory=list)
    routed: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    routed_prompt_tokens: int = 0
    routed_cached_tokens: int = 0
    oracle_cached_tokens: int = 0
    """Over the routed turns: what always picking the best-cached replica at send time would have hit."""


class FleetSim:
    def __init__(
        self, policies: Sequence[Profile], params: SimParams, workload: Workload, settings: RunSettings
    ) -> None:
        """``policies``: one instance of the same policy per gateway replica (``settings.gateways``)."""
        assert len(policies) == settings.gateways and len({p.name for p in policies}) == 1
        self.policies, self.params, self.workload, self.s = list(policies), params, workload, settings
        self.policy = policies[0]
        n = settings.replicas
        self.urls = [f"http://replica-{i}:8000" for i in range(n)]
        self.models = [PoolReplica(params) for _ in range(n)]
        self.busy = [False] * n
        self.in_flight = [0] * n
        """All open requests per replica (every gateway's and direct ones): the load samples."""
        self.gateway_in_flight = [[0] * n for _ in policies]
        """What each gateway knows: its own open requests per replica."""
        self.down: set[int] = set()
        self.scraped: list[tuple[float, float]] = [(0.0, 0.0)] * n
        self.turns: dict[int, _Turn] = {}
        self.ids = itertools.count(1)
        self.ready: deque[tuple[Conversation, int]] = deque()
        """The closed loop's turns whose conversation waits for a worker, oldest first."""
        self.events: list[tuple[float, int, str, Any]] = []
        self.order = itertools.count()
        self.rng = random.Random(settings.seed)
        # Engine-side block chains of each tenant's system prompt, extended per turn instead of rehashed.
        self._system_chains = [
            block_hashes(MODEL, render_chat([{"role": "system", "content": sp}]), params.block_size)
            for sp in workload.system_prompts
        ]
        self.result = RunResult(self.policy.name, routed=[0] * n)
        # precise_prefix: the replicas publish their cache's stores and evictions into a KV index, as
        # vLLM's KV events do (delivered at once). A sim block stands for one "token" whose id is its
        # chained hash, so the scorer's own block hashing (block size 1) names the same blocks.
        self.kv: KVIndex | None = None
        self._now = 0.0
        for policy in policies:
            for scorer, _ in policy.scorers:
                if isinstance(scorer, PrecisePrefix):
                    if self.kv is None:  # one index: every gateway reads the same events
                        self.kv = KVIndex(capacity=4 * params.num_blocks * n)
                    scorer.attach(self.kv, clock=lambda: self._now)
        if self.kv is not None:
            for m in self.models:
                m.pool.events = []
        self._external: dict[bytes, int] = {}
        self._seqno = [0] * n

    def _publish(self, now: float, r: int) -> None:
        """The replica's stores and evictions since the last step, in the order they happened."""
        assert self.kv is not None
        log = self.models[r].pool.events
        assert log is not None
        events: list[BlockStored | BlockRemoved] = []
        for stored, run in itertools.groupby(log, key=lambda e: e[0]):
            hashes = tuple(self._external[h] for _, h in run)
            events.append(BlockStored(hashes, None, (), 1) if stored else BlockRemoved(hashes))
        log.clear()
        if events:
            self.kv.apply(self.urls[r], Batch(self._seqno[r], now, tuple(events)), now, now)
            self._seqno[r] += 1

    def _push(self, t: float, kind: str, data: Any) -> None:
        heapq.heappush(self.events, (t, next(self.order), kind, data))

    def run(self) -> RunResult:
        s = self.s
        end = s.warmup + s.duration
        self._push(s.warmup, "measure", None)  # first: with no warm-up, the first turns count too
        if s.concurrency:
            for _ in range(max(s.live, s.concurrency)):
                conv = self.workload.conversation()
                if conv is not None:
                    self.ready.append((conv, 0))
            for _ in range(s.concurrency):
                self._push(0.0, "next", None)
        else:
            self._push(self.rng.expovariate(s.conversation_rate), "arrive", None)
        self._push(0.0, "scrape", None)
        if s.restart is not None:
            self._push(s.restart[1], "leave", s.restart[0])
            self._push(s.restart[1] + s.restart[2], "rejoin", s.restart[0])
        base = (0, 0)
        while self.events:
            now, _, kind, data = heapq.heappop(self.events)
            if now > end or self._done():
                break
            if kind == "step":
                self._step_done(now, data)
            elif kind == "turn":
                self._submit(now, *data)
            elif kind == "next":
                if self.ready:  # empty only once the plan's conversations are all under way or done
                    self._submit(now, *self.ready.popleft())
            elif kind == "deliver":
                self._deliver(now, *data)
            elif kind == "arrive":
                conv = self.workload.conversation()
                if conv is None:  # a fixed plan (replay.py) ran out of conversations
                    continue
                self._submit(now, conv, 0)
                if not s.concurrency:
                    self._push(now + self.rng.expovariate(s.conversation_rate), "arrive", None)
            elif kind == "scrape":
                self._scrape(now)
                self._push(now + s.scrape_interval, "scrape", None)
            elif kind == "leave":
                self.down.add(data)
            elif kind == "rejoin":
                self._rejoin(now, data)
            elif kind == "measure":
                base = (sum(m.prefix_queries_total for m in self.models), sum(m.prefix_hits_total for m in self.models))
                self.result = RunResult(self.policy.name, routed=[0] * s.replicas)
        r = self.result
        r.prefix_queries = sum(m.prefix_queries_total for m in self.models) - base[0]
        r.prefix_hits = sum(m.prefix_hits_total for m in self.models) - base[1]
        r.duration = s.duration
        return r

    def _done(self) -> bool:
        """A fixed plan (replay.py) ends when its last turn is answered; the generated workload never does."""
        return False

    # -- gateway side ----------------------------------------------------------------------------------
    def _prompt(self, conv: Conversation, index: int) -> tuple[int, list[bytes], str]:
        """A turn's prompt: its engine tokens, the engine's block chain of it, and the text the gateway sees."""
        messages: list[dict[str, str]] = [{"role": "system", "content": self.workload.system_prompts[conv.tenant]}]
        for i in range(index):
            messages.append({"role": "user", "content": conv.questions[i]})
            messages.append({"role": "assistant", "content": output_text(conv.answered[i])})
        messages.append({"role": "user", "content": conv.questions[index]})
        engine_prompt = render_chat(messages)
        blocks = block_hashes(MODEL, engine_prompt, self.params.block_size, known=self._system_chains[conv.tenant])
        return count_tokens(engine_prompt), blocks, render_chat_prompt(messages)

    def _path(self, conv: Conversation, index: int, up: list[int]) -> tuple[int | None, int]:
        """(gateway, -1) for a routed turn, (None, replica) for a direct one. It depends on the turn alone,
        so every policy sends it the same way."""
        path = random.Random(f"{self.s.seed}-{conv.cid}-{index}")
        if path.random() < self.s.direct_share:
            return None, up[path.randrange(len(self.urls)) % len(up)]  # the engine Service: any ready replica
        g = path.randrange(len(self.policies))
        if self.s.sticky_gateway:
            g = random.Random(f"{self.s.seed}-{conv.cid}").randrange(len(self.policies))
        return g, -1

    def _submit(self, now: float, conv: Conversation, index: int) -> None:
        prompt_tokens, blocks, text = self._prompt(conv, index)
        tokens = None
        if self.kv is not None:
            self._now = now
            tokens = tuple(int.from_bytes(b[:4], "big") for b in blocks)
            for b, ext in zip(blocks, prompt_block_hashes(tokens, 1), strict=True):
                self._external[b] = ext
        up = [i for i in range(len(self.urls)) if i not in self.down]
        g, r = self._path(conv, index, up)
        oracle = 0
        if g is None:
            self.result.reasons["direct"] = self.result.reasons.get("direct", 0) + 1
        else:
            held = max(self.models[i].held(blocks) for i in up)
            oracle = min(held * self.params.block_size, prompt_tokens - 1)
            req = RoutingRequest(MODEL, text, session_key=f"conv-{conv.cid}", token_ids=tokens)
            own = self.gateway_in_flight[g]
            candidates = [
                EndpointLoad(self.urls[i], own[i], waiting=self.scraped[i][0], kv_cache_usage=self.scraped[i][1])
                for i in up
            ]
            decision = self.policies[g].pick(req, candidates)
            r = self.urls.index(decision.url)
            self.result.reasons[decision.reason] = self.result.reasons.get(decision.reason, 0) + 1
            own[r] += 1
        self.result.routed[r] += 1
        seq = SimSequence(next(self.ids), prompt_tokens, conv.outputs[index], blocks)
        self.turns[seq.seq_id] = _Turn(
            conv, index, now, r, conv.outputs[index], g, blocks=blocks, seq=seq, oracle=oracle
        )
        self.in_flight[r] += 1
        if self.s.engine_delay:
            self._push(now + self.s.engine_delay, "deliver", (r, seq))
        else:
            self._deliver(now, r, seq)

    def _deliver(self, now: float, r: int, seq: SimSequence) -> None:
        self.models[r].add(seq)
        if not self.busy[r]:
            self._start_step(now, r)

    def _scrape(self, now: float) -> None:
        self.scraped = [(float(m.num_waiting), m.kv_cache_usage) for m in self.models]
        if now >= self.s.warmup:
            self.result.in_flight_samples.append(list(self.in_flight))
            self.result.running_samples.append([m.num_running for m in self.models])

    def _rejoin(self, now: float, r: int) -> None:
        """The restarted replica returns with an empty cache, once its last request has drained."""
        model = self.models[r]
        if not model.idle:
            self._push(now + 1.0, "rejoin", r)
            return
        model.reset()
        if model.pool.events is not None:
            model.pool.events.clear()  # the old process's last words: the clear below supersedes them
        if self.kv is not None:  # a new process's events: the index resyncs (here: a clear)
            self.kv.apply(self.urls[r], Batch(self._seqno[r], now, (AllBlocksCleared(),)), now, now)
            self._seqno[r] += 1
        self.down.discard(r)

    # -- engine side -----------------------------------------------------------------------------------
    def _start_step(self, now: float, r: int) -> None:
        duration = self.models[r].plan_step()
        self.busy[r] = duration is not None
        if duration is not None:
            self._push(now + duration, "step", r)

    def _step_done(self, now: float, r: int) -> None:
        measuring = now >= self.s.warmup
        for e in self.models[r].finish_step():
            turn = self.turns[e.seq_id]
            if e.generated == 1:
                turn.first_token = now
                if measuring and turn.arrival >= self.s.warmup:
                    self.result.ttft.append(now - turn.arrival)
                    if turn.gateway is not None and turn.seq is not None:
                        self.result.routed_prompt_tokens += turn.seq.prompt_tokens
                        self.result.routed_cached_tokens += turn.seq.cached_tokens
                        self.result.oracle_cached_tokens += turn.oracle
            if measuring:
                self.result.output_tokens += 1
            if e.finished:
                del self.turns[e.seq_id]
                self.in_flight[r] -= 1
                if turn.gateway is not None:
                    self.gateway_in_flight[turn.gateway][r] -= 1
                conv = turn.conv
                conv.answered.append(turn.output)
                if measuring:
                    self.result.completed += 1
                if self.s.concurrency:  # the closed loop: this worker takes the front ready turn
                    if turn.index + 1 < len(conv.questions):
                        self.ready.append((conv, turn.index + 1))
                    elif (new := self.workload.conversation()) is not None:
                        self.ready.append((new, 0))
                    self._push(now, "next", None)
                elif turn.index + 1 < len(conv.questions):
                    self._push(now + conv.think_times[turn.index], "turn", (conv, turn.index + 1))
        if self.kv is not None:
            self._publish(now, r)
        self._start_step(now, r)
