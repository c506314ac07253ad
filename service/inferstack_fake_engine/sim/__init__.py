"""A vLLM replica model: continuous batching, chunked prefill, a finite LRU prefix cache.

``model.ReplicaModel`` is pure and clock-free: it plans one engine step at a time and says how long the
step takes. ``driver.RealtimeReplica`` runs it on the event loop's clock behind the fake engine's HTTP
API; ``bench/routing`` runs a subclass of it with one KV block pool (``bench/routing/pool.py``) in
virtual time. See docs/fake-engine.md for the model.
"""

from .blocks import block_hashes
from .driver import RealtimeReplica
from .model import Emission, ReplicaModel, SimParams, SimSequence
from .prefix_cache import PrefixCache

__all__ = [
    "Emission",
    "PrefixCache",
    "RealtimeReplica",
    "ReplicaModel",
    "SimParams",
    "SimSequence",
    "block_hashes",
]
