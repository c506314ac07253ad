"""Reading and validating an OpenAI request: a bad request costs no filter and no upstream call."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import InvalidRequestError, PayloadTooLargeError
from ..types import Receive

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}
# What each endpoint must carry besides ``model``.
REQUIRED_FIELD = {"chat": "messages", "completions": "prompt", "embeddings": "input"}
MAX_MODEL_LENGTH = 256  # model names are metric labels and ledger keys: bounded before anything sees them


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
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) or (stream and kind == "embeddings"):
        raise InvalidRequestError("'stream' must be a boolean (and false for embeddings).", param="stream")
    return payload
