"""How an upstream attempt fails: the exceptions ``client.py`` raises and the router catches.

A module of their own so that ``client.py`` compiles with mypyc (bench/compiled_build.py, a measured
and rejected speed-up: docs/performance.md): a compiled class cannot derive from these builtin
exceptions or be a dataclass exception, and here they stay ordinary Python classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UpstreamError, UpstreamTimeoutError


@dataclass
class AttemptError(Exception):
    """An upstream attempt failed before anything reached the client: it may be retried."""

    kind: str  # connect | timeout | http_5xx | protocol | too_large
    error: UpstreamError | UpstreamTimeoutError
    retryable: bool = True
    """Safe to send to another replica: False when the answer may have been generated (a non-stream
    request cut at its response timeout, an answer over ``responses.max_bytes``): retrying would
    generate it again."""
    replica_fault: bool = True
    """Counts against the replica (outlier detection): False for an answer too large to relay, which
    is the request's doing (its max_tokens, n, logprobs), not the replica's; else a client asking for
    such answers again and again would eject healthy replicas."""

    def __str__(self) -> str:
        return f"{self.kind}: {self.error.message}"


class ConnectError(ConnectionError):
    """The connection to the engine could not be made (refused, unreachable, unresolvable)."""


class ConnectTimeout(TimeoutError):
    """Connecting to the engine took longer than ``connect_timeout``: nothing was sent."""


class ProtocolError(ConnectionError):
    """The engine closed the connection before the answer ended, or sent what is not HTTP/1.1."""
