"""Reading and validating a request (``api/request.py``), each limit at its boundary.

The functions are called as the endpoint calls them: ``read_body`` with ASGI messages, ``validate``
with the bytes a client sent. What they refuse is an OpenAI-shaped 400 (or 413) naming the field.
"""

from __future__ import annotations

import orjson
import pytest

from inferstack.api.request import (
    MAX_NESTING,
    ClientGone,
    _depth,
    read_body,
    validate,
    wait_disconnect,
)
from inferstack.bounds import MAX_MODEL_LENGTH
from inferstack.errors import InvalidRequestError, PayloadTooLargeError
from inferstack.types import Message, Receive

LIMIT = 64


def messages(*sent: Message) -> tuple[Receive, list[Message]]:
    """An ASGI ``receive`` that hands out ``sent`` in order, and the list of those not read yet
    (reading past the end is a test failure: the function asked for a message the server never sends)."""
    left = list(sent)

    async def receive() -> Message:
        assert left, "read past the last message"
        return left.pop(0)

    return receive, left


def chunk(body: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_in_several_chunks_is_read_whole() -> None:
    receive, left = messages(chunk(b'{"a": ', more=True), chunk(b"", more=True), chunk(b"1}"))
    assert await read_body({}, receive, LIMIT) == b'{"a": 1}'
    assert left == []


async def test_one_chunk_is_the_body_and_nothing_more_is_read() -> None:
    receive, left = messages(chunk(b"abc"), chunk(b"never read"))
    assert await read_body({"content-length": "3"}, receive, LIMIT) == b"abc"
    assert len(left) == 1


async def test_asgi_defaults_no_body_key_is_empty_and_no_more_body_key_is_the_last() -> None:
    receive, left = messages({"type": "http.request", "more_body": True}, {"type": "http.request", "body": b"x"})
    assert await read_body({}, receive, LIMIT) == b"x"
    assert left == []
    receive, _ = messages({"type": "http.request"})
    assert await read_body({}, receive, LIMIT) == b""


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive, left = messages(chunk(b"x"))
    with pytest.raises(PayloadTooLargeError, match=f"exceeds {LIMIT} bytes"):
        await read_body({"content-length": str(LIMIT + 1)}, receive, LIMIT)
    assert len(left) == 1  # nothing was read


@pytest.mark.parametrize("declared", [None, "not a number", "-5", str(LIMIT)])
async def test_the_limit_holds_on_what_arrives_whatever_was_declared(declared: str | None) -> None:
    headers = {} if declared is None else {"content-length": declared}
    receive, _ = messages(chunk(b"x" * LIMIT))
    assert await read_body(headers, receive, LIMIT) == b"x" * LIMIT  # exactly the limit: read
    receive, left = messages(chunk(b"x" * (LIMIT - 1), more=True), chunk(b"xx", more=True), chunk(b"never read"))
    with pytest.raises(PayloadTooLargeError, match=f"exceeds {LIMIT} bytes"):
        await read_body(headers, receive, LIMIT)
    assert len(left) == 1  # refused at the chunk that crossed the limit, not at the end


async def test_a_client_that_leaves_before_its_body_is_gone() -> None:
    receive, _ = messages(chunk(b"x", more=True), {"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        await read_body({}, receive, LIMIT)


async def test_wait_disconnect_returns_at_the_disconnect_message_only() -> None:
    receive, left = messages(chunk(b"late"), chunk(b""), {"type": "http.disconnect"}, chunk(b"after"))
    await wait_disconnect(receive)
    assert len(left) == 1


def body(**fields: object) -> bytes:
    return orjson.dumps(fields)


def deep(depth: int) -> object:
    """``depth`` levels of arrays and objects, alternating."""
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def refused(kind: str, raw: bytes) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        validate(kind, raw)
    assert caught.value.status == 400
    return caught.value


def test_nesting_up_to_the_limit_passes_and_one_level_more_is_refused() -> None:
    # The request object is the first level.
    assert validate("completions", body(model="m", prompt="x", x=deep(MAX_NESTING - 1)))["x"]
    # The same with more brackets than levels (so that the depth is walked): still the limit, passes.
    assert validate("completions", body(model="m", prompt="x", x=deep(MAX_NESTING - 1), pad=[[]] * MAX_NESTING))
    err = refused("completions", body(model="m", prompt="x", x=deep(MAX_NESTING)))
    assert err.message == f"The request body nests deeper than {MAX_NESTING} levels."
    # Deep inside a list of shallow ones, not only in the first or last child.
    assert refused("completions", body(model="m", prompt="x", x=[[1], deep(MAX_NESTING), [2]]))


def test_many_shallow_containers_pass() -> None:
    # More brackets than MAX_NESTING, nested two deep: the count alone refuses nothing.
    payload = validate("chat", body(model="m", messages=[{"role": "user", "content": "x"}] * (3 * MAX_NESTING)))
    assert len(payload["messages"]) == 3 * MAX_NESTING


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("s", 0),
        ({}, 1),
        ([], 1),
        ({"a": [1, {"b": []}]}, 4),
        ([[1], [[[2]]], 3], 4),
        ({"a": 1, "b": {"c": 2}}, 2),
    ],
)
def test_depth_counts_arrays_and_objects(value: object, depth: int) -> None:
    assert _depth(value) == depth


def test_depth_stops_walking_once_past_the_limit() -> None:
    # Deeper than the limit on the first path walked: the answer is "too deep", not the full depth.
    assert _depth(deep(MAX_NESTING + 50)) == MAX_NESTING + 1


def test_a_model_name_of_the_limit_passes_and_one_character_more_is_refused() -> None:
    name = "m" * MAX_MODEL_LENGTH
    assert validate("completions", body(model=name, prompt="x"))["model"] == name
    err = refused("completions", body(model=name + "m", prompt="x"))
    assert (err.param, err.message) == ("model", f"'model' is longer than {MAX_MODEL_LENGTH} characters.")


@pytest.mark.parametrize("model", [None, "", 3, ["m"]])
def test_model_must_be_a_non_empty_string(model: object) -> None:
    raw = body(prompt="x") if model is None else body(model=model, prompt="x")
    err = refused("completions", raw)
    assert (err.param, err.message) == ("model", "'model' is required and must be a non-empty string.")


@pytest.mark.parametrize(("kind", "field"), [("chat", "messages"), ("completions", "prompt"), ("embeddings", "input")])
@pytest.mark.parametrize("value", ["absent", None, "", []])
def test_each_endpoint_requires_its_field(kind: str, field: str, value: object) -> None:
    raw = body(model="m") if value == "absent" else body(model="m", **{field: value})
    err = refused(kind, raw)
    assert (err.param, err.message) == (field, f"'{field}' is required.")


@pytest.mark.parametrize(("kind", "field"), [("completions", "prompt"), ("embeddings", "input")])
@pytest.mark.parametrize("value", ["x", ["x"], [1, 2], 0, False])
def test_a_present_prompt_or_input_passes(kind: str, field: str, value: object) -> None:
    # 0 and False are not "missing" (the engine judges them): only null, "" and [] are.
    assert validate(kind, body(model="m", **{field: value}))[field] == value


def test_chat_messages_must_be_a_list() -> None:
    err = refused("chat", body(model="m", messages={"role": "user"}))
    assert (err.param, err.message) == ("messages", "'messages' must be an array of messages.")
    # The same object as a prompt is the engine's business.
    assert validate("completions", body(model="m", prompt={"role": "user"}))


@pytest.mark.parametrize(
    ("kind", "stream", "ok"),
    [
        ("chat", True, True),
        ("chat", False, True),
        ("completions", True, True),
        ("embeddings", False, True),
        ("embeddings", True, False),
        ("chat", "true", False),
        ("chat", 1, False),
        ("completions", None, True),  # OpenAI's schema allows null: "not given"
        ("embeddings", None, True),
    ],
)
def test_stream_is_a_boolean_and_false_for_embeddings(kind: str, stream: object, ok: bool) -> None:
    field = {"chat": "messages", "completions": "prompt", "embeddings": "input"}[kind]
    raw = body(model="m", stream=stream, **{field: ["x"]})
    if ok:
        assert validate(kind, raw)["stream"] is stream
    else:
        err = refused(kind, raw)
        assert (err.param, err.message) == ("stream", "'stream' must be a boolean (and false for embeddings).")


def test_no_stream_field_is_not_a_stream() -> None:
    assert "stream" not in validate("embeddings", body(model="m", input="x"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "The request body is not valid JSON."),
        (b"", "The request body is not valid JSON."),
        (b"[1, 2]", "The request body must be a JSON object."),
        (b'"text"', "The request body must be a JSON object."),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes, message: str) -> None:
    err = refused("chat", raw)
    assert (err.param, err.message) == (None, message)
