"""The moto launcher the fleet and Terraform tests share: env reaches the server, the wait is bounded,
and no server outlives the context (a stray moto would hold a port and a core for the whole run)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from inferstack_devstack.moto import moto_server


def running_with(argument: str) -> list[int]:
    """Pids of live processes whose command line holds ``argument`` (as its own word)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited while we looked
        if argument.encode() in argv:
            pids.append(int(proc.name))
    return pids


def managed_policies(url: str) -> int:
    iam = boto3.client(
        "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    return len(iam.list_policies(Scope="AWS", MaxItems=5)["Policies"])


def test_env_reaches_the_server_and_the_server_stops_with_the_context(tmp_path: Path) -> None:
    with moto_server({"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}, run_dir=tmp_path) as url:
        port = url.rsplit(":", 1)[1]
        assert running_with(port)
        assert managed_policies(url) == 5  # AWS-managed policies are loaded only with the variable set
    assert running_with(port) == []  # stop() waited for it: nothing left, no sleep needed
    assert (tmp_path / f"moto-{port}.log").is_file()


def test_without_the_variable_no_managed_policies(tmp_path: Path) -> None:
    with moto_server(run_dir=tmp_path) as url:
        assert managed_policies(url) == 0


def test_a_server_that_does_not_answer_in_time_is_killed(tmp_path: Path) -> None:
    # A zero deadline expires before the first probe: the launcher must raise and stop the server.
    with pytest.raises(RuntimeError, match="not ready after 0 s"):
        with moto_server(run_dir=tmp_path, timeout=0.0):
            pass  # pragma: no cover - never reached
    (log,) = tmp_path.glob("moto-*.log")
    port = log.stem.removeprefix("moto-")
    assert running_with(port) == []
