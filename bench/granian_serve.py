"""The gateway app under Granian instead of uvicorn, for bench/ab_bench.py's server comparison only.

Same app, same settings (``INFERSTACK_*``), one worker with a single-threaded runtime on uvloop,
the same GC settings as ``inferstack.server``; none of the server's drain handling (not measured).
"""

from __future__ import annotations

import gc
import os

from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
from granian.server import Server

from inferstack.accesslog import configure_logging
from inferstack.app import create_app
from inferstack.config import Settings
from inferstack.server import GC_GEN0_THRESHOLD


def app():  # type: ignore[no-untyped-def]
    """Granian's factory: built in the worker, with the GC settings ``inferstack.server`` applies."""
    settings = Settings()
    configure_logging(settings.log_level)
    application = create_app(settings)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    return application


if __name__ == "__main__":
    Server(
        "granian_serve:app",
        address=os.environ["INFERSTACK_HOST"],
        port=int(os.environ["INFERSTACK_PORT"]),
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops.uvloop,
        factory=True,
        log_access=False,
        backlog=2048,
    ).serve()
