"""moto's AWS emulator (``moto_server``, plain HTTP on a free loopback port) for the tests that run AWS
clients for real: the fleet's S3 sync scripts (fleet/tests) and the Terraform rehearsal
(terraform/tests/test_rehearsal.py). One launcher, so both get the same bounded start and stop.

Plain HTTP on purpose: this machine sets ``AWS_CA_BUNDLE``, and against a TLS emulator the Terraform
provider retries silently for minutes. moto comes from requirements/terraform.txt (``moto[server]``).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from . import RUN_DIR, Stack, free_port

# Generous: 2 cores shared with other suites; moto answers in about 2 s when the machine is idle.
START_TIMEOUT = 60.0
# moto stops at once on SIGTERM; the group is SIGKILLed after this.
STOP_TIMEOUT = 10.0


def moto_binary() -> str:
    """``moto_server`` beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.is_file() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed: `make install` installs requirements/terraform.txt")
    return found


@contextlib.contextmanager
def moto_server(
    env: Mapping[str, str] | None = None, *, run_dir: Path = RUN_DIR, timeout: float = START_TIMEOUT
) -> Iterator[str]:
    """A fresh moto_server on a free port: its URL, once ``/moto-api/`` answers 200.

    ``env`` is added to this process's environment (for example ``MOTO_IAM_LOAD_MANAGED_POLICIES``,
    without which every attachment of an AWS-managed policy fails). Raises ``RuntimeError`` with the
    log's tail if the server exits or does not answer within ``timeout`` seconds; on exit, and on
    any failure, the server's process group gets SIGTERM, then SIGKILL after ``STOP_TIMEOUT``.
    The log is ``run_dir/moto-PORT.log`` (the port keeps concurrent sessions' logs apart)."""
    port = free_port()
    stack = Stack(run_dir=run_dir)
    try:
        service = stack.start(
            f"moto-{port}",
            [moto_binary(), "-H", "127.0.0.1", "-p", str(port)],
            f"http://127.0.0.1:{port}",
            env=dict(env or {}),
        )
        stack.wait_ready(service, "/moto-api/", timeout)
        yield service.url
    finally:
        stack.stop(STOP_TIMEOUT)
