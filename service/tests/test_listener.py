"""The listener defends itself: raw sockets against a real gateway process (``inferstack serve``).

Idle, trickled-header and trickled-body connections are closed by their deadlines; oversized headers
get 431; connections beyond the cap get 503. Every answer is an OpenAI error body.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import orjson
import pytest

from .gateway_harness import free_port

KEEPALIVE, HEADER, BODY, MAX_CONNECTIONS = 1.0, 1.0, 1.5, 4
SLACK = 2.0  # seconds a deadline may be late on a loaded 2-core machine before the test calls it missed


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """The gateway's public and admin ports."""
    port, admin = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INFERSTACK_")},
        "INFERSTACK_HOST": "127.0.0.1",
        "INFERSTACK_PORT": str(port),
        "INFERSTACK_ADMIN_PORT": str(admin),
        "INFERSTACK_UPSTREAMS": f"http://127.0.0.1:{free_port()}",  # nothing there: the model is held
        "INFERSTACK_MODELS": "fake-model",
        "INFERSTACK_AUTH_ENABLED": "false",
        "INFERSTACK_DRAIN_GRACE": "0",
        "INFERSTACK_LISTENER__KEEPALIVE_TIMEOUT": str(KEEPALIVE),
        "INFERSTACK_LISTENER__HEADER_TIMEOUT": str(HEADER),
        "INFERSTACK_LISTENER__BODY_TIMEOUT": str(BODY),
        "INFERSTACK_LISTENER__MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "INFERSTACK_LISTENER__MAX_HEADER_BYTES": "2048",
    }
    proc = subprocess.Popen([sys.executable, "-m", "inferstack", "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, "the gateway exited"
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.05)
        yield port, admin
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def gateway(ports: tuple[int, int]) -> int:
    return ports[0]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and a content-length body) off a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> float:
    """Send one byte per ``every`` seconds until the server closes; returns when (seconds)."""
    started = time.monotonic()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(every)  # the attack itself is a slow sender: this pacing is the test input
        if time.monotonic() - started > limit:
            break
    return time.monotonic() - started


def openai_error(response: bytes, status: int) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


def test_an_idle_connection_is_closed_before_its_first_request(gateway: int) -> None:
    with connect(gateway) as sock:
        data, took = read_until_closed(sock, KEEPALIVE + SLACK)
    assert data == b""
    assert KEEPALIVE * 0.8 <= took <= KEEPALIVE + SLACK


def test_headers_trickled_byte_by_byte_get_408_at_the_header_deadline(gateway: int) -> None:
    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + b"x-slow: " + b"a" * 200
    with connect(gateway) as sock:
        trickle(sock, request, 0.05, HEADER + SLACK)
        data, _ = read_until_closed(sock, SLACK)
    assert openai_error(data, 408)["code"] == "request_timeout"


def test_a_trickled_body_gets_408_at_the_body_deadline(gateway: int) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n"
    with connect(gateway) as sock:
        sock.sendall(head)
        took = trickle(sock, b"{" + b" " * 498 + b"}", 0.05, BODY + SLACK)
        data, _ = read_until_closed(sock, SLACK)
    assert openai_error(data, 408)["code"] == "request_timeout"
    assert took <= BODY + SLACK


def test_oversized_headers_get_431(gateway: int) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 4096 + b"\r\n\r\n")
        data, _ = read_until_closed(sock, SLACK)
    assert openai_error(data, 431)["code"] == "headers_too_large"


def test_a_keep_alive_connection_serves_requests_then_closes_when_idle(gateway: int) -> None:
    with connect(gateway) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        data, took = read_until_closed(sock, KEEPALIVE + SLACK)
    assert data == b"" and took <= KEEPALIVE + SLACK


def test_connections_beyond_the_cap_get_503_and_are_closed(gateway: int) -> None:
    held = [connect(gateway) for _ in range(MAX_CONNECTIONS)]
    try:
        # Make sure the server has accepted all of them before the one over the cap.
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        with connect(gateway) as extra:
            data, _ = read_until_closed(extra, SLACK)
        assert openai_error(data, 503)["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    # Below the cap again: served.
    deadline = time.monotonic() + SLACK
    while True:
        with connect(gateway) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            data, _ = read_until_closed(sock, SLACK)
        if data.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
            break
    assert data.startswith(b"HTTP/1.1 200 ")


def test_the_admin_port_is_not_capped_and_answers_while_the_public_cap_is_full(ports: tuple[int, int]) -> None:
    public, admin = ports

    def hello(sock: socket.socket) -> bytes:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        return read_response(sock)

    # Connections closed by earlier tests are released asynchronously: retry until none is left.
    deadline = time.monotonic() + SLACK
    while True:
        held_admin = [connect(admin) for _ in range(MAX_CONNECTIONS)]
        held = [connect(public) for _ in range(MAX_CONNECTIONS)]
        try:
            for sock in held_admin:
                hello(sock)
            # Admin connections take no public slot: MAX_CONNECTIONS public ones are still served.
            answers = [hello(sock) for sock in held]
            if all(a.startswith(b"HTTP/1.1 200 ") for a in answers) or time.monotonic() > deadline:
                assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers), answers
                # The public cap is full: one more is refused, and monitoring still works.
                with connect(public) as extra:
                    refused, _ = read_until_closed(extra, SLACK)
                with connect(admin) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    metrics, _ = read_until_closed(sock, SLACK)
                break
        finally:
            for sock in held + held_admin:
                sock.close()
    assert openai_error(refused, 503)["code"] == "too_many_connections"
    assert metrics.startswith(b"HTTP/1.1 200 ") and b"inferstack_" in metrics
