"""The real-engine routing bench's turn log: where each routed turn's tokens went, against the oracle.

Joins the bench's per-turn records (what every running replica held at send time, by the engines' KV
events) with the gateways' access-log lines (the chosen replica and the decision's reason), on the
bench's own ``x-request-id``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import inferstack_devstack as devstack
from inferstack.kvcache.index import KVIndex
from inferstack.kvcache.wire import Batch, BlockRemoved


def access_lines(gateways: list[devstack.Service]) -> dict[str, dict[str, Any]]:
    """The gateways' access-log lines by request id (the bench sends its own ``x-request-id``)."""
    out = {}
    for g in gateways:
        for line in g.log_path.read_text(errors="replace").splitlines():
            if '"request_id"' in line and line.startswith("{"):
                entry = json.loads(line)
                out[entry["request_id"]] = entry
    return out


def where_tokens_went(records: list[dict[str, Any]], access: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Routed turns' hit tokens against the oracle's, split into the choice and what happened after it.

    ``choice``: tokens the chosen replica held at send time fewer than the best one (by the events),
    per decision reason; ``after_send``: tokens the chosen replica held at send time but did not hit
    (evicted before the prefill, or a concurrent turn's race), net of tokens it stored in between.
    """
    choice: dict[str, int] = {}
    missed: dict[str, int] = {}
    causes: dict[str, list[int]] = {}
    after = 0
    joined = 0
    survival = oracle = prompt = 0
    for r in records:
        entry = access.get(r["id"])
        if r["direct"] or "cached" not in r or entry is None or entry.get("upstream") not in r["held"]:
            continue
        joined += 1
        reason = str(entry.get("reason"))
        gap = r["oracle"] - r["held"][entry["upstream"]]
        choice[reason] = choice.get(reason, 0) + gap
        missed[reason] = missed.get(reason, 0) + (gap > 0)
        after += r["held"][entry["upstream"]] - r["cached"]
        oracle += r["oracle"]
        prompt += r["prompt"]
        if "lost_cause" in r:
            tally = causes.setdefault(r["lost_cause"], [0, 0])
            tally[0] += r["held"][entry["upstream"]] - r["cached"]
            tally[1] += 1
        if "held_at_first_token" in r:
            survival += survival_oracle({**r, "upstream": entry["upstream"]})
    return {
        "turns_joined": joined,
        "choice_tokens_lost_by_reason": dict(sorted(choice.items())),
        "choice_turns_below_best_by_reason": dict(sorted(missed.items())),
        "after_send_tokens_lost": after,
        "after_send_by_cause": {k: {"tokens": v[0], "turns": v[1]} for k, v in sorted(causes.items())},
        "oracle_tokens": oracle,
        "prompt_tokens": prompt,
        "survival_oracle_tokens": survival or None,
    }


Removals = dict[tuple[str, int], list[tuple[float, float, float]]]
"""(replica, block hash) -> each removal's (previous batch's publish time, its batch's, applied at)."""


class TimedIndex(KVIndex):
    """The bench's own index, also noting when each replica's blocks were removed.

    vLLM publishes a step's events after the step's forward pass (``Scheduler.update_from_output``),
    so an eviction made when a step was scheduled reaches subscribers one forward pass later. Per
    removal it keeps the engine's publish time (the batch's ``ts``), the previous batch's (the
    earliest the evicting step can have been scheduled, for a busy engine) and when the bench
    applied it, so a turn's lost prefix can be put before or after the turn's send.
    """

    def __init__(self) -> None:
        super().__init__()
        self.removals: Removals = {}
        self._last_ts: dict[str, float] = {}
        self._previous: dict[str, float] = {}

    def applying(self, url: str, batch: Batch, now: float, wall_now: float, step: int | None) -> Iterator[None]:
        # (The subscriber's path, and ``apply``'s.)
        if batch.part == 0:  # (a later part of a large message: the same batch, the same times)
            self._previous[url] = self._last_ts.get(url, batch.ts)
            self._last_ts[url] = batch.ts
        previous = self._previous[url]
        for event in batch.events:
            if isinstance(event, BlockRemoved):
                for h in event.block_hashes:
                    self.removals.setdefault((url, h), []).append((previous, batch.ts, wall_now))
        yield from super().applying(url, batch, now, wall_now, step)


def why_lost(removals: Removals, url: str, chain: list[int], held: int, cached: int, sent: float) -> str:
    """Why a turn hit ``cached`` of the ``held`` leading blocks ``url`` held (by the bench's index) at ``sent``.

    vLLM's hit stops at the first missing block, so the first block lost decides:

    - ``removed_before_send``: published before the send, applied by the bench after it (the bench's
      view, and so the oracle's, was late);
    - ``evicted_in_step_at_send``: removed by the step the engine was running at the send (published
      after the send, scheduled before it): no subscriber could have known at the send;
    - ``evicted_after_send``: removed by a step scheduled after the send, while the turn queued;
    - ``not_removed``: no removal seen (the bench's view was ahead, or the hit was cut short otherwise).
    """
    if cached >= held:
        return "none"
    late = [r for r in removals.get((url, chain[cached]), []) if r[2] >= sent]
    if not late:
        return "not_removed"
    previous, published, _ = min(late, key=lambda r: r[1])
    if published <= sent:
        return "removed_before_send"
    return "evicted_in_step_at_send" if previous < sent else "evicted_after_send"


def survival_oracle(record: dict[str, Any]) -> int:
    """The best hit a turn could have had on the replica that kept most of its prefix until it was admitted.

    The issue's oracle takes what the best replica held when the turn was sent, so it counts blocks
    evicted while the turn would have queued there. This one takes, on every replica but the chosen
    one, the prefix held both at the send and at the first token (what survived the turn's wait), and
    on the chosen one what the engine actually hit. Not a run policy either: an admission elsewhere
    would have changed that replica's queue.
    """
    best = record["cached"]
    for url, held in record["held"].items():
        if url != record["upstream"]:
            best = max(best, min(held, record.get("held_at_first_token", {}).get(url, held)))
    return int(best)
