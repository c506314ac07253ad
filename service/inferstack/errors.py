"""The gateway's exception tree and its mapping to OpenAI-shaped errors.

Every failure the gateway reports to a client is one of these. Lower layers (the upstream client,
filters, routing) raise them; the API layer turns them into a JSON body (or an SSE error event on a
stream that has already started) with ``to_body``. Nothing else builds error bodies.

    GatewayError
    ├── InvalidRequestError         400 invalid_request_error
    │   └── PayloadTooLargeError    413
    ├── AuthenticationError         401
    ├── PermissionDeniedError       403
    ├── NotFoundError               404 (model_not_found, unknown route)
    ├── ConflictError               422 (idempotency key reused with another body)
    ├── RateLimitError              429 rate_limit_exceeded, with Retry-After
    │   └── QuotaExceededError      429 insufficient_quota
    ├── UpstreamError               502 upstream unreachable or broken
    │   └── UpstreamTooLargeError   502 an answer larger than the gateway relays
    ├── NoUpstreamError             503 no healthy upstream
    ├── DependencyUnavailableError  503 Redis is down and the feature fails closed, with Retry-After
    └── UpstreamTimeoutError        504
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = dict(headers or {})
        self.tenant: str | None = None
        """The tenant's label once admission knew it (the access line's), else None."""
        if retry_after is not None:
            # Retry-After takes whole seconds; never tell a client to retry immediately.
            self.headers.setdefault("Retry-After", str(max(1, int(retry_after + 0.999))))

    def to_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLargeError(InvalidRequestError):
    status = 413
    default_code = "request_too_large"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "model_not_allowed"


class NotFoundError(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(GatewayError):
    status = 422
    type = "invalid_request_error"
    default_code = "idempotency_key_reused"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)
        self.retry_after = retry_after


class QuotaExceededError(RateLimitError):
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    default_code = "bad_gateway"


class UpstreamTooLargeError(UpstreamError):
    default_code = "upstream_response_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The upstream replica's answer is larger than the gateway relays ({limit} bytes)."
            " Ask for less (max_tokens, n, logprobs) or stream it."
        )


class NoUpstreamError(GatewayError):
    status = 503
    type = "service_unavailable"
    default_code = "no_healthy_upstream"


class DependencyUnavailableError(GatewayError):
    status = 503
    type = "service_unavailable"
    default_code = "dependency_unavailable"


class UpstreamTimeoutError(GatewayError):
    status = 504
    type = "timeout_error"
    default_code = "upstream_timeout"


def internal_error_body() -> dict[str, Any]:
    """The body for a bug: says nothing about internals (no exception text, no trace)."""
    return GatewayError("The gateway failed to process the request.").to_body()


# An engine's error statuses, as the client should see them: 401/403 from an engine mean the gateway
# is misconfigured (the client's key is the gateway's business), so they become 502.
_UPSTREAM_TYPES = {429: "rate_limit_error"}
_UPSTREAM_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 429: "rate_limit_exceeded"}


def normalise_upstream_error(status: int, data: bytes) -> tuple[int, bytes | None]:
    """An engine's non-200 answer as (status, OpenAI error body); the body is None when ``data`` is one.

    vLLM answers most errors in a shape like OpenAI's, but in its own vocabulary
    (``"type": "BadRequestError", "code": 400``: a class name, and a number where OpenAI's schema has
    a string or null), and some not at all (FastAPI's ``{"detail": "Not Found"}`` for a route the model
    does not serve, plain text from a proxy in between). A client sees every engine error as the
    gateway's own: OpenAI's ``type`` for the status, ``code`` a string or null, the engine's message
    (and ``param``, when it names one).
    """
    return _normalised(status, _json(data), data)


def _json(data: bytes) -> Any:
    """``data`` parsed, or None when it is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _normalised(status: int, parsed: Any, data: bytes) -> tuple[int, bytes | None]:
    """``normalise_upstream_error`` on ``data`` already parsed (``parsed``: None when it is not JSON)."""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    client_error = 400 <= status < 500 and status not in (401, 403)
    message = None
    if isinstance(parsed, dict):
        for source in (error, parsed):
            if isinstance(source, dict):
                found = source.get("message", source.get("detail"))
                if isinstance(found, str):
                    message = found
                    break
        if message is None and isinstance(error, str):
            message = error
    if message is None:
        text = data[:200].decode("utf-8", "replace").strip()
        message = text or f"The upstream replica answered with status {status}."
    if not client_error:
        return 502, orjson.dumps(UpstreamError(f"The upstream replica failed: {message}").to_body())
    kind = _UPSTREAM_TYPES.get(status, "invalid_request_error")
    given = error if isinstance(error, dict) else {}
    param, code = given.get("param"), given.get("code")
    body = {
        "error": {
            "message": message,
            "type": kind,
            "param": param if isinstance(param, str) else None,
            "code": code if isinstance(code, str) else _UPSTREAM_CODES.get(status),
        }
    }
    if set(given) == set(body["error"]) and all(given[k] == v for k, v in body["error"].items()):
        return status, None  # already in OpenAI's shape and vocabulary: the engine's bytes as they are
    return status, orjson.dumps(body)


def normalise_upstream_error_event(event: bytes) -> bytes:
    """An engine's mid-stream error event (``data: {"error": ...}``) in the gateway's vocabulary, as
    ``normalise_upstream_error`` gives a whole answer's: the HTTP status is long sent, so the engine's
    ``code`` stands in for it when it is one (vLLM's is), else the event is an engine failure (502's)."""
    payload = event.strip()[5:]  # after "data:"
    parsed = _json(payload)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    _, body = _normalised(status, parsed, payload)
    return event if body is None else b"data: " + body + b"\n\n"
