"""An S3 emulator for the tests that run the fleet's generated AWS CLI scripts for real: moto
(``inferstack_devstack.moto``, local, plain HTTP), and a relay in front of it that can refuse every
request with S3's 403 AccessDenied at once (what a pod whose role lost the bucket gets; an
unreachable endpoint would cost the CLI seconds of retries per call). The AWS CLI is version 1
(``awscli`` from PyPI, requirements/fleet.txt); the images run version 2, which is not on PyPI."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
# Generous: 2 cores shared with other suites; a wait here is a few syncs.
DEADLINE = 60.0


def tool(name: str, hint: str) -> str:
    for candidate in (VENV_BIN / name, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail(f"{name} is not installed: {hint}")


def wait_for(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> float:
    """Poll ``check`` until it holds; the seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - start


_DENIED_BODY = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
_DENIED = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_DENIED_BODY), _DENIED_BODY)
)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


class S3Gate:
    """A TCP relay to moto that, closed, answers each request with 403 AccessDenied."""

    def __init__(self, upstream_port: int) -> None:
        self.open = False
        self._upstream = upstream_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)  # accept() wakes up to see `_stopped`
        self._stopped = False
        self.port = int(self._server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if not self.open:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                conn.sendall(_DENIED)
                return
            with socket.create_connection(("127.0.0.1", self._upstream)) as upstream:
                back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
                back.start()
                _pipe(conn, upstream)
                back.join()

    def close(self) -> None:
        self._stopped = True
        self._server.close()


def cli_version() -> str:
    """The AWS CLI the test runs, from its installed metadata (running `aws --version` costs seconds)."""
    aws = Path(tool("aws", "`make install` installs requirements/fleet.txt (awscli)")).resolve()
    found = sorted(aws.parent.parent.glob("lib/python*/site-packages/awscli-*.dist-info"))
    return f"{aws}: " + (found[-1].name.removesuffix(".dist-info").replace("-", " ") if found else "version unknown")


def aws_env(pod_env: dict[str, str], endpoint: str) -> dict[str, str]:
    """The container's env plus what the pod gets from elsewhere: credentials (Pod Identity there;
    moto accepts any) and the endpoint; the CLI from requirements/fleet.txt first on PATH."""
    aws = tool("aws", "`make install` installs requirements/fleet.txt (awscli)")
    return {
        **pod_env,
        "PATH": f"{Path(aws).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": endpoint,
    }
