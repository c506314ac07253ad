"""The gateway's clocks, in one place.

``monotonic`` measures deadlines, durations and ages: it never jumps, and on Linux it is the same
clock as the event loop's ``loop.time()``, so a deadline taken here can be handed to
``asyncio.timeout_at``. ``wall`` stamps what outlives the process or crosses machines: usage records
and budget months, and the engines' KV-event timestamps (vLLM stamps them with ``time.time()``).
Components that decide by time take a ``Clock`` argument, defaulting to one of these, so tests
drive time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

monotonic: Clock = time.monotonic
wall: Clock = time.time
