"""Reading and validating an OpenAI request: a bad request costs no filter and no upstream call."""

from __future__ import annotations

from typing import Any

import orjson

from ..bounds import MAX_MODEL_LENGTH
from ..errors import InvalidRequestError, PayloadTooLargeError
from ..types import Receive

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
# What each endpoint must carry besides ``model``.
REQUIRED_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
# The gateway re-encodes bodies (the cache key, a stream's usage request) and orjson writes at most
# 255 levels; the cache key's normaliser recurses per level. No OpenAI request comes near this.
MAX_NESTING = 128


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body exceeds {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def validate(kind: str, body: bytes) -> dict[str, Any]:
    """The parsed request, or InvalidRequestError naming what is wrong."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    # Counting brackets is C-speed: only a body with that many containers can nest that deep.
    if body.count(b"[") + body.count(b"{") > MAX_NESTING and _depth(payload) > MAX_NESTING:
        raise InvalidRequestError(f"The request body nests deeper than {MAX_NESTING} levels.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("'model' is required and must be a non-empty string.", param="model")
    if len(model) > MAX_MODEL_LENGTH:
        raise InvalidRequestError(f"'model' is longer than {MAX_MODEL_LENGTH} characters.", param="model")
    required = REQUIRED_FIELD[kind]
    if payload.get(required) in (None, "", []):
        raise InvalidRequestError(f"'{required}' is required.", param=required)
    if kind == "chat" and not isinstance(payload["messages"], list):
        raise InvalidRequestError("'messages' must be an array of messages.", param="messages")
    stream = payload.get("stream")
    # null is OpenAI's "not given" (its schema allows it; vLLM reads it as false): not a stream.
    if stream is not None and (not isinstance(stream, bool) or (stream and kind == "embeddings")):
        raise InvalidRequestError("'stream' must be a boolean (and false for embeddings).", param="stream")
    return payload


def _depth(value: Any) -> int:
    """The deepest nesting of arrays and objects in ``value`` (iterative: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_NESTING:
            return deepest  # deep enough to refuse: no need to walk the rest
        stack.extend((child, level + 1) for child in children)
    return deepest
