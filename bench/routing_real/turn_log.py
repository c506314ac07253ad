"""The real-engine routing bench's turn log: where each routed turn's tokens went, against the oracle.

Joins the bench's per-turn records (what every running replica held at send time, by the engines' KV
events) with the gateways' access-log lines (the chosen replica and the decision's reason), on the
bench's own ``x-request-id``.
"""

from __future__ import annotations

import json
from typing import Any

import inferstack_devstack as devstack


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
    after = 0
    joined = 0
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
    return {
        "turns_joined": joined,
        "choice_tokens_lost_by_reason": dict(sorted(choice.items())),
        "choice_turns_below_best_by_reason": dict(sorted(missed.items())),
        "after_send_tokens_lost": after,
    }
