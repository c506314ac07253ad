r"""This tree's gateway with parts of its per-request work switched off, for bench/ab_bench.py.

    .venv/bin/python bench/ablation_build.py            # every variant, under .cache/ablation/
    .venv/bin/python bench/ab_bench.py --side base=. --side all=.cache/ablation/all/service \
        --side router=-@vllm-router [--side NAME=.cache/ablation/NAME/service ...]

Where does a request's CPU go, feature by feature? Each variant is a directory holding a
``sitecustomize.py`` (Python runs it at start-up, before the gateway is imported) and a link to this
tree's ``service/inferstack``: the code is the tree's own, one thing is switched off by configuration
or by replacing one function, and ``all`` switches off every one of them. A variant is a measuring
device, not a gateway to run: without its timeouts a hung engine would hold a request for ever.

- ``log``: no access line (``INFERSTACK_LOG_LEVEL=warning``);
- ``round_robin``: the round robin profile instead of the default ``prefix_affinity`` (no prompt
  rendering, no prefix hashing);
- ``usage``: streams are not asked for the usage chunk (no body re-encoding, one event fewer);
- ``locks``: prometheus_client's counters and gauges without their ``threading.Lock``;
- ``timeouts``: ``asyncio.timeout`` and ``timeout_at`` replaced by a context that arms nothing;
- ``finish``: no accounting after the answer (``Tenancy.finish``: the usage ledger, prices, tenant
  metrics, the release of limits: none are configured in the bench).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ABLATIONS = {
    "log": """
os.environ["INFERSTACK_LOG_LEVEL"] = "warning"
""",
    "round_robin": """
os.environ["INFERSTACK_ROUTING_POLICY"] = "round_robin"
""",
    "usage": """
import inferstack.router.router as _router
_router._ask_for_usage = lambda payload, ex: None
""",
    "locks": """
import prometheus_client.values as _values

def _inc(self, amount):
    self._value += amount

def _set(self, value, timestamp=None):
    self._value = value

_values.MutexValue.inc = _inc
_values.MutexValue.set = _set
""",
    "timeouts": """
import asyncio as _asyncio

class _NoDeadline:
    def __init__(self, when=None):
        self._when = when
    async def __aenter__(self):
        return self
    async def __aexit__(self, *exc):
        return None
    def when(self):
        return self._when
    def reschedule(self, when):
        self._when = when
    def expired(self):
        return False

_asyncio.timeout = _NoDeadline
_asyncio.timeout_at = _NoDeadline
""",
    "finish": """
from inferstack.filters.tenancy import Tenancy as _Tenancy

async def _finish(self, adm, **kwargs):
    return None

_Tenancy.finish = _finish
""",
}


def build(out: Path, name: str, parts: list[str]) -> Path:
    service = out / name / "service"
    shutil.rmtree(out / name, ignore_errors=True)
    service.mkdir(parents=True)
    (service / "inferstack").symlink_to(REPO / "service" / "inferstack")
    code = "".join(ABLATIONS[p] for p in parts)
    doc = f'"""Ablation {name}: {", ".join(parts)} (bench/ablation_build.py)."""'
    (service / "sitecustomize.py").write_text(f"{doc}\nimport os\n{code}")
    return service


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "ablation")
    args = parser.parse_args()
    out = args.out.resolve()
    for name in ABLATIONS:
        print(build(out, name, [name]))
    print(build(out, "all", list(ABLATIONS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
