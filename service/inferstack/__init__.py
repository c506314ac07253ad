"""inferstack: an OpenAI-compatible gateway for fleets of vLLM engines."""

__version__ = "0.1.0"
