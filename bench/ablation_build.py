r"""This tree's gateway with parts of its per-request or per-token work replaced, for bench/ab_bench.py.

    .venv/bin/python bench/ablation_build.py            # every variant, under .cache/ablation/
    .venv/bin/python bench/ab_bench.py --side base=. --side all=.cache/ablation/all/service \
        --side router=-@vllm-router [--side NAME=.cache/ablation/NAME/service ...]

Where does a request's CPU go, feature by feature? Each variant is a directory holding a
``sitecustomize.py`` (Python runs it at start-up, before the gateway is imported) and a link to this
tree's ``service/inferstack``: the code is the tree's own, one thing is switched off by configuration
or by replacing one function, and ``all`` switches off every one of them. A variant is a measuring
device, not a gateway to run: without its timeouts a hung engine would hold a request for ever. A
variant whose code fails at start-up exits (status 3) instead of running the tree unchanged under
its name (Python only warns about a failing ``sitecustomize``).

- ``log``: no access line (``INFERSTACK_LOG_LEVEL=warning``);
- ``round_robin``: the round robin profile instead of the default ``prefix_affinity`` (no prompt
  rendering, no prefix hashing);
- ``usage``: streams are not asked for the usage chunk (no body re-encoding, one event fewer);
- ``locks``: prometheus_client's counters and gauges without their ``threading.Lock``;
- ``timeouts``: ``asyncio.timeout`` and ``timeout_at`` replaced by a context that arms nothing;
- ``finish``: no accounting after the answer (``Tenancy.finish``: the usage ledger, prices, tenant
  metrics, the release of limits: none are configured in the bench).

``all`` is the six above. Apart from them, two variants bound what a native relay could save:

- ``relay``: the per-token path at its floor. Once a stream's response has started, each read from
  the engine that has no ``[DONE]`` or usage chunk is written to the client's socket as it came
  (the engine's chunked framing is the client's), from the engine connection's ``data_received``:
  no HTTP parsing, no event scan, no token count or inter-token timing, no write deadline. What
  is left per token is one Python call and the write. It assumes each read ends on a chunk's end
  (so it is with the fake engine, which writes one whole event per chunk); the last events go the
  usual way.
- ``floor``: ``all`` and ``relay`` together.

And one variant measures a native relay that keeps the per-token work:

- ``native``: the same reads taken by ``bench/native_relay/fastrelay.c`` (compiled here with gcc
  for this interpreter) instead of the Python path: the chunk framing and the events checked as
  ``sse.whole_events`` checks them, the tokens counted as ``text_count`` counts them, the write
  deadline checked and the inter-token gaps kept as ``_Relay.fast`` and ``_TextClock`` do, the read
  written to the client as it came. Anything else (a partial chunk, the usage chunk, the end, a
  paused client) is declined to the Python path, as ``_Relay.fast`` declines it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "native_relay"))
import native_build

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
    "relay": """
from inferstack.upstream.client import _Connection

_received = _Connection.data_received
_Connection._raw_write = None

def _data_received(self, data):
    write = self._raw_write
    if write is None and self.sink is not None:
        out = self.sink.__self__._out
        if out.started and out.cycle is not None:
            write = out.cycle.transport.write
    if write is not None:
        if b"[DONE]" not in data and b'"usage"' not in data:
            self._raw_write = write
            write(data)
            return
        self._raw_write = None
    _received(self, data)

_Connection.data_received = _data_received
""",
    "native": """
import _fastrelay
from inferstack.metrics.gateway import HistogramBatch
from inferstack.upstream.client import _Connection

_received = _Connection.data_received
_Connection._native = _Connection._native_relay = None

def _data_received(self, data):
    sink = self.sink
    if sink is not None:
        relay = sink.__self__
        follower = self._native
        if follower is None or self._native_relay is not relay:
            follower = None
            out = relay._out
            cycle = out.cycle
            if out.started and cycle is not None:
                follower = self._native = _fastrelay.Follower(
                    cycle.transport.write, relay._loop.time, cycle.flow, cycle, relay, relay._ex,
                    relay.clock, HistogramBatch.FLUSH_EVERY,
                )
                self._native_relay = relay
        if follower is not None and follower.feed(data):
            return
    _received(self, data)

_Connection.data_received = _data_received
""",
}
PER_REQUEST = ["log", "round_robin", "usage", "locks", "timeouts", "finish"]


def build(out: Path, name: str, parts: list[str]) -> Path:
    service = out / name / "service"
    shutil.rmtree(out / name, ignore_errors=True)
    service.mkdir(parents=True)
    (service / "inferstack").symlink_to(REPO / "service" / "inferstack")
    body = textwrap.indent("".join(ABLATIONS[p] for p in parts), "    ")
    doc = f'"""Ablation {name} (bench/ablation_build.py): {", ".join(parts)}."""'
    guard = "except BaseException:\n    import traceback\n\n    traceback.print_exc()\n    os._exit(3)\n"
    (service / "sitecustomize.py").write_text(f"{doc}\nimport os\n\ntry:\n{body}\n{guard}")
    return service


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "ablation")
    args = parser.parse_args()
    out = args.out.resolve()
    for name in ABLATIONS:
        print(build(out, name, [name]))
    print(build(out, "all", PER_REQUEST))
    print(build(out, "floor", [*PER_REQUEST, "relay"]))
    native_build.build(out / "native" / "service")  # the C its sitecustomize imports
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
