"""What one streamed request measured: TTFT, every inter-token gap, end-to-end time, tokens.

Pure bookkeeping over (event, clock reading) pairs so it is tested without a server. Definitions:

- TTFT: request sent -> first content event received.
- ITL: every gap between consecutive content events (a gap per event, so a stall shows up as
  one large gap rather than being averaged away).
- end-to-end: request sent -> stream finished (``[DONE]``, error or abort).
- output tokens: ``usage.completion_tokens`` when the server reports it (we ask for it with
  ``stream_options.include_usage``), else the number of content events (one token each in vLLM).
- output tokens/s of a request: output tokens / end-to-end time, the rate the user experiences
  (LLMPerf's definition); the aggregate throughput is all output tokens / wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sse import Event


@dataclass
class StreamTiming:
    sent_at: float
    first_content_at: float | None = None
    last_content_at: float | None = None
    gaps: list[float] = field(default_factory=list)
    content_events: int = 0
    usage: dict[str, int] | None = None
    error: str | None = None
    done: bool = False
    text_parts: list[str] = field(default_factory=list)

    def observe(self, event: Event, now: float) -> None:
        if event.is_content:
            if self.last_content_at is None:
                self.first_content_at = now
            else:
                self.gaps.append(now - self.last_content_at)
            self.last_content_at = now
            self.content_events += 1
            self.text_parts.append(event.text)
        if event.usage is not None:
            self.usage = event.usage
        if event.error is not None and self.error is None:
            self.error = event.error
        if event.done:
            self.done = True

    @property
    def ttft(self) -> float | None:
        return None if self.first_content_at is None else self.first_content_at - self.sent_at

    @property
    def output_tokens(self) -> int:
        if self.usage and isinstance(self.usage.get("completion_tokens"), int):
            return self.usage["completion_tokens"]
        return self.content_events

    @property
    def prompt_tokens(self) -> int | None:
        value = (self.usage or {}).get("prompt_tokens")
        return value if isinstance(value, int) else None

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


def tokens_per_second(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0
