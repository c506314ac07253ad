import json

from llmload.sse import Event, SSEParser, classify


def chunk(content: str | None = None, role: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    body = {"choices": [{"index": 0, "delta": delta}] if usage is None else [], "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


STREAM = (
    chunk(role="assistant", content="")
    + chunk("Hel")
    + chunk("lo")
    + chunk(usage={"prompt_tokens": 5, "completion_tokens": 2})
    + b"data: [DONE]\n\n"
)


def parse_in_pieces(data: bytes, size: int) -> list[Event]:
    parser = SSEParser()
    events = []
    for i in range(0, len(data), size):
        events += parser.feed(data[i : i + size])
    return events + parser.close()


def test_events_are_the_same_however_the_network_splits_the_bytes() -> None:
    whole = parse_in_pieces(STREAM, len(STREAM))
    assert [e.text for e in whole] == ["", "Hel", "lo", "", ""]
    assert whole[-1].done
    assert whole[-2].usage == {"prompt_tokens": 5, "completion_tokens": 2}
    for size in (1, 3, 7, 64):
        assert parse_in_pieces(STREAM, size) == whole


def test_the_role_only_first_chunk_is_not_content() -> None:
    assert not parse_in_pieces(chunk(role="assistant", content=""), 100)[0].is_content


def test_a_token_whose_text_is_empty_is_content_as_the_gateway_counts_it() -> None:
    """The TTFT locust measures and the gateway's histogram must time the same event: a chat delta of
    an empty ``content`` (a token that does not yet end a character) is a token to both (session 12:
    locust's TTFT was 54-69 ms later than the gateway's in the live test when adapters that often
    begin so were listed). The gateway's own counter is the partner: relay/sse.py ``text_count``."""
    from inferstack.relay.sse import text_count

    samples = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "x"}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": ""}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": ""}}]},
        {"choices": [{"index": 0, "text": ""}]},
        {"choices": [{"index": 0, "text": "y"}, {"index": 1, "text": "z"}]},
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    ]
    for body in samples:
        data = json.dumps(body, separators=(",", ":")).encode()
        assert classify(data).tokens == text_count(data), body
    assert classify(b'{"choices":[{"index":0,"delta":{"content":""}}]}').is_content


def test_crlf_line_endings_and_comments() -> None:
    data = b": keep-alive\r\n\r\n" + chunk("x").replace(b"\n", b"\r\n")
    assert [e.text for e in parse_in_pieces(data, 5)] == ["x"]


def test_reasoning_and_tool_call_fragments_count_as_content() -> None:
    body = {
        "choices": [
            {"delta": {"reasoning_content": "hmm"}},
            {"delta": {"tool_calls": [{"function": {"arguments": '{"a"'}}]}},
        ]
    }
    assert classify(json.dumps(body).encode()).text == 'hmm{"a"'


def test_an_error_event_is_reported_by_type() -> None:
    event = classify(b'{"error": {"message": "engine died", "type": "internal_error", "code": 500}}')
    assert event.error == "internal_error"
    assert classify(b"{not json").error == "malformed_event"


def test_a_stream_cut_without_a_final_blank_line_still_yields_its_last_event() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.close() == [Event(done=True)]
