"""Size bounds on what the gateway reads from others; imports no stage (like ``clock.py``).

Model names: a request's ``model`` (``api.request`` refuses longer ones) and whatever names one
elsewhere (the shared adapter record in Redis) are at most ``MAX_MODEL_LENGTH`` characters.

An engine's control-plane answers (``/v1/models``, ``/metrics``, ``/tokenize``, a runtime LoRA load's
refusal) are read with a size bound, and so is what the Kubernetes API answers discovery (a list, each
watch event).

The engine is a dependency, not a trusted peer: a buggy one can answer anything, and these answers are
read whole and parsed on the event loop. vLLM's own ``/metrics`` grows without end on a LoRA engine
(``vllm:lora_requests_info`` gets a new series at every change and keeps the old ones), and a
gzip-encoded answer decompresses to whatever it likes; so every such read stops at a bound (of the
decoded bytes) and raises ``TooLarge`` past it. The caller decides what that means and counts it.
"""

from __future__ import annotations

import aiohttp

MAX_MODEL_LENGTH = 256
"""Model names are metric labels and ledger keys: bounded before anything sees them."""
MODELS_BYTES = 8 << 20
"""``/v1/models``: a card is ~300 bytes, so room for ~25,000 adapters."""
METRICS_BYTES = 8 << 20
"""``/metrics``: vLLM's is 50-200 kB; its LoRA series can grow past this after days of adapter churn."""
LOAD_ANSWER_BYTES = 64 << 10
"""``/v1/load_lora_adapter``'s refusal: a one-line message (a success is not read)."""
TOKENIZE_BYTES = 16 << 20
"""``/tokenize``: the ids of a prompt under ``max_prompt_chars`` (1,000,000), about 8 bytes each at most."""
WATCH_EVENT_BYTES = 4 << 20
"""One Kubernetes watch event (a line): an EndpointSlice holds at most 1,000 endpoints (the API's cap,
100 by default), each well under 1 kB as JSON."""
LIST_BYTES = 64 << 20
"""A Kubernetes list of a Service's EndpointSlices: 16 slices of the largest kind."""

UNLISTED_MODELS = 1024
"""Names engines listed once and no replica lists now, still known (their requests wait for a replica:
scaled to zero); past this many, the longest unlisted is forgotten. A fleet's own models are declared
(the catalog, ``INFERSTACK_MODELS``) and never forgotten; engines that register adapters under a fresh
name per upload would otherwise grow the set, its series and the adapter bookkeeping without end."""

_CHUNK = 64 << 10


class TooLarge(ValueError):
    """The answer is larger than its bound."""


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole (decoded) body of ``resp``, or ``TooLarge`` once it passes ``limit`` bytes."""
    declared = resp.content_length
    if declared is not None and declared > limit and "content-encoding" not in resp.headers:
        raise TooLarge(f"{resp.url.path}: {declared} bytes declared, more than {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{resp.url.path}: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
