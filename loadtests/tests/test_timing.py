import pytest

from llmload.sse import Event
from llmload.timing import StreamTiming, tokens_per_second


def test_ttft_and_every_gap_from_content_events_only() -> None:
    timing = StreamTiming(sent_at=10.0)
    timing.observe(Event(text=""), 10.05)  # role chunk: not a token
    timing.observe(Event(text="a"), 10.2)
    timing.observe(Event(text="b"), 10.25)
    timing.observe(Event(text="c"), 10.5)  # a stall shows as one large gap
    timing.observe(Event(done=True), 10.51)
    assert timing.ttft == pytest.approx(0.2)
    assert timing.gaps == pytest.approx([0.05, 0.25])
    assert timing.done and timing.text == "abc"


def test_output_tokens_come_from_usage_when_reported() -> None:
    timing = StreamTiming(sent_at=0.0)
    timing.observe(Event(text="several tokens"), 1.0)
    assert timing.output_tokens == 1  # fallback: one token per content event
    timing.observe(Event(usage={"prompt_tokens": 7, "completion_tokens": 3}), 1.1)
    assert (timing.output_tokens, timing.prompt_tokens) == (3, 7)


def test_no_content_means_no_ttft_and_the_first_error_is_kept() -> None:
    timing = StreamTiming(sent_at=0.0)
    timing.observe(Event(error="overloaded"), 0.1)
    timing.observe(Event(error="later"), 0.2)
    assert timing.ttft is None and timing.gaps == [] and timing.error == "overloaded"


def test_tokens_per_second() -> None:
    assert tokens_per_second(30, 1.5) == 20
    assert tokens_per_second(30, 0) == 0
