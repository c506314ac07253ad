"""A fake vLLM engine: a test double with vLLM's OpenAI API and ``vllm:`` metrics, and no model.

Plain mode answers after a fixed TTFT and inter-token latency; simulator mode (``EngineConfig.sim``)
paces tokens with a vLLM replica model (batching, queueing, prefix cache). Both inject faults on
request. Not an engine: it generates filler words. See docs/fake-engine.md.
"""

from .app import create_app
from .config import Behaviour, EngineConfig
from .server import running_engine, serve
from .sim import SimParams
from .text import count_tokens, render_chat

__all__ = [
    "Behaviour",
    "EngineConfig",
    "SimParams",
    "count_tokens",
    "create_app",
    "render_chat",
    "running_engine",
    "serve",
]
