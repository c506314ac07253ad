from inferstack.relay.sse import (
    DONE,
    MAX_PENDING,
    EventSplitter,
    error_event,
    text_count,
    usage_of,
    usage_of_body,
    whole_events,
)

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
USAGE = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\n\n'


def test_events_split_across_arbitrary_chunk_boundaries_are_byte_identical() -> None:
    stream = CHUNK * 3 + USAGE + DONE
    for size in (1, 2, 7, 64, len(stream)):
        splitter = EventSplitter()
        events = []
        for i in range(0, len(stream), size):
            events += splitter.feed(stream[i : i + size])
        assert b"".join(events) == stream
        assert events == [CHUNK, CHUNK, CHUNK, USAGE, DONE]
        assert splitter.flush() == b""


def test_a_chunk_holding_exactly_one_event_is_that_event() -> None:
    # vLLM's usual case (one event per chunk), and the chunks that only look like it.
    splitter = EventSplitter()
    assert [splitter.feed(event) for event in (CHUNK, USAGE, DONE)] == [[CHUNK], [USAGE], [DONE]]
    assert splitter.feed(b"data: a\r\n\r\ndata: b\n\n") == [b"data: a\r\n\r\n", b"data: b\n\n"]
    assert splitter.feed(b"data: a\n\ndata: b") == [b"data: a\n\n"]
    assert splitter.feed(b"\n\n") == [b"data: b\n\n"]
    assert splitter.flush() == b""


def test_crlf_separated_events_are_split_too() -> None:
    events = EventSplitter().feed(b"data: a\r\n\r\ndata: b\r\n\r\n")
    assert events == [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]


def test_an_unterminated_event_is_held_until_flush() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: partial") == []
    assert splitter.flush() == b"data: partial"


def test_a_buffer_without_boundary_is_forwarded_past_the_bound() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"x" * MAX_PENDING) == []  # at the bound: held
    assert splitter.feed(b"x") == [b"x" * (MAX_PENDING + 1)]  # past it: forwarded, nothing kept
    assert not splitter.pending and splitter.flush() == b""
    assert splitter.feed(CHUNK) == [CHUNK]


def test_text_detection_ignores_role_only_and_usage_chunks() -> None:
    assert text_count(CHUNK)
    assert text_count(b'data: {"choices":[{"text":"a","index":0}]}\n\n')
    assert not text_count(b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n')
    assert not text_count(USAGE)
    assert not text_count(DONE)


def test_usage_is_read_only_from_the_final_usage_chunk() -> None:
    assert usage_of(USAGE) == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert usage_of(b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}\n\n') is None
    assert usage_of(b'data: {"choices":[],"usage":{broken\n\n') is None


def test_error_event_ends_the_stream() -> None:
    event = error_event({"error": {"message": "m"}})
    assert event == b'data: {"error":{"message":"m"}}\n\n' + DONE


def test_whole_events_counts_like_text_count_event_by_event_or_declines() -> None:
    role = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    text = b'data: {"choices":[{"text":"a","finish_reason":null}]}\n\n'
    quoted = b'data: {"choices":[{"delta":{"content":"say \\"content\\":\\"x\\""}}]}\n\n'
    tool = b'data: {"choices":[{"delta":{"content":null,"tool_calls":[]}}]}\n\n'
    for chunk in (CHUNK, role + CHUNK * 3, text * 2, quoted, tool + CHUNK):
        events = EventSplitter().feed(chunk)
        assert whole_events(chunk) == sum(text_count(e) for e in events), chunk
    # Not whole events, the usage chunk or the end inside: the relay splits these event by event.
    for chunk in (CHUNK + b"data: partial", CHUNK[:-1], b"data: a\r\n\r\n", CHUNK + USAGE, text + DONE, DONE + CHUNK):
        assert whole_events(chunk) == -1, chunk


def test_usage_is_read_from_data_without_a_space_and_only_from_a_json_object() -> None:
    # "data:" with no space is SSE too; a payload that is not an object, or whose usage is not one, has none.
    assert usage_of(b'data:{"choices":[],"usage":{"prompt_tokens":1}}\n\n') == {"prompt_tokens": 1}
    assert usage_of(b'data: [{"choices":[],"usage":{"prompt_tokens":1}}]\n\n') is None
    assert usage_of(b'data: {"choices":[],"usage":7,"x":{"usage":{"prompt_tokens":1}}}\n\n') is None


def test_flush_empties_the_splitter() -> None:
    assert EventSplitter().flush() == b""
    splitter = EventSplitter()
    splitter.feed(b"data: partial")
    assert splitter.pending
    assert splitter.flush() == b"data: partial"
    assert not splitter.pending and splitter.flush() == b""
    assert splitter.feed(CHUNK) == [CHUNK]


def test_an_event_ends_at_its_blank_line_and_what_follows_waits() -> None:
    # A stray newline after an event: the next chunk begins with the boundary, and the event after
    # it must not wait for a third chunk.
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\n\n\n") == [b"data: a\n\n"]
    assert splitter.pending
    assert splitter.feed(b"\ndata: b\n\n") == [b"\n\n", b"data: b\n\n"]


def test_crlf_and_mixed_boundaries_at_the_start_of_the_buffer_end_an_event_there() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\n\r\n\r\n") == [b"data: a\r\n\r\n"]
    assert splitter.feed(b"\r\ndata: b\r\n\r\n") == [b"\r\n\r\n", b"data: b\r\n\r\n"]
    # SSE lets each line end its own way: the first blank line ends the event, whichever it is.
    assert splitter.feed(b"data: c\n\n\n") == [b"data: c\n\n"]
    assert splitter.feed(b"\ndata: d\r\n\r\n") == [b"\n\n", b"data: d\r\n\r\n"]


def test_a_chunk_that_begins_with_a_crlf_blank_line_is_not_taken_for_one_event() -> None:
    # Its only LF blank line is at its end, as in a chunk of one event: the CRLF blank line before
    # it ends an (empty) event first, so the event after it is one of its own (DONE compared whole).
    assert EventSplitter().feed(b"\r\n\r\n" + DONE) == [b"\r\n\r\n", DONE]


def test_each_choice_of_an_event_that_carries_a_token_counts_once() -> None:
    two = b'data: {"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{}}]}\n\n'
    assert text_count(two) == 1 == whole_events(two)
    three = b'data: {"choices":[{"index":0,"delta":{}},{"index":1,"text":"b"},{"index":2,"text":"c"}]}\n\n'
    assert text_count(three) == 2 == whole_events(three)
    # A text event with vLLM's continuous usage: counted; whole_events leaves it to the other path.
    counted = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}],"usage":{"completion_tokens":1}}\n\n'
    assert text_count(counted) == 1 and whole_events(counted) == -1


def test_reasoning_and_tool_call_deltas_are_tokens_too() -> None:
    # vLLM 0.32's DeltaMessage: content, reasoning, tool_calls (unset fields left out). A reasoning
    # model's first token is its first reasoning delta (TTFT), and a client that leaves mid-thought
    # or mid-call is billed for those tokens.
    reasoning = b'data: {"choices":[{"index":0,"delta":{"reasoning":"Let me think"}}]}\n\n'
    call = b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a"}}]}}]}\n\n'
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    done = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    assert [text_count(e) for e in (role, reasoning, call, done)] == [0, 1, 1, 0]
    assert whole_events(role + reasoning + call + done) == 2


def test_an_empty_completion_text_is_not_text() -> None:
    empty = b'data: {"choices":[{"index":0,"text":"","finish_reason":null}]}\n\n'
    assert not text_count(empty)
    assert whole_events(empty) == 0
    assert whole_events(empty + b'data: {"choices":[{"index":0,"text":"a"}]}\n\n') == 1


def test_usage_of_a_whole_answer_is_read_only_from_a_json_object() -> None:
    assert usage_of_body(b'{"choices":[],"usage":{"prompt_tokens":3}}') == {"prompt_tokens": 3}
    assert usage_of_body(b'[{"usage":{"prompt_tokens":3}}]') is None
    assert usage_of_body(b'{"usage":7,"x":{"usage":{}}}') is None
    assert usage_of_body(b'{"usage":{broken') is None
    assert usage_of_body(b'{"choices":[]}') is None
