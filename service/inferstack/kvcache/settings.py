"""Settings of the gateway-side tokenizer (``INFERSTACK_KV_EVENTS__LOCAL_TOKENIZER__*``): a value object of
``KVEvents`` (config/routing.py), kept beside the tokenizer it configures; pydantic only, nothing of the gateway."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LocalTokenizerSettings(BaseModel):
    """Token ids computed in the gateway, checked against the engine's ``/tokenize`` (docs/routing.md)."""

    dirs: dict[str, str] = Field(
        default_factory=dict,
        description="Tokenizer files by model name (JSON): a directory holding the model's tokenizer.json and"
        ' tokenizer_config.json (a model directory does), e.g. {"llama-3-8b": "/models/llama-3-8b"}.'
        " Models not named here are tokenized by the engine.",
    )
    check_first: int = Field(
        8,
        ge=0,
        description="Requests per model whose local ids are compared with the engine's /tokenize before the"
        " local ones are used (until then the engine's ids route them; when /tokenize gives no answer in"
        " time, the local ones). Any difference, here or later,"
        " turns the local tokenizer off for that model until restart.",
    )
    check_fraction: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Share of later requests checked again, in the background (never delaying the request;"
        " one check per model at a time).",
    )
    check_timeout: float = Field(
        5.0, gt=0, description="Seconds a background check's /tokenize may take (then it counts `failed`)."
    )
    thread_chars: int = Field(
        8192,
        ge=0,
        description="Prompts with more characters than this (content, plus a few per chat message) are rendered"
        " and tokenized in a worker thread (the tokenizer releases the GIL), not on the event loop: about 2 ms"
        " per 1,000 tokens (docs/routing.md).",
    )
    threads: int = Field(
        2, ge=1, description="Long prompts (over `thread_chars`) tokenized at once, each in a worker thread."
    )
    thread_wait: float = Field(
        0.25,
        gt=0,
        description="Seconds a long prompt may wait for one of those `threads`; then the engine's /tokenize is"
        " asked (within `tokenize_timeout`), counted in inferstack_kv_local_tokenizer_busy_total.",
    )
