"""Session fixtures shared by every test folder: the real local stack, started once per run.

``live_stack`` is a real vLLM (CPU, the generated tiny model) behind a real gateway process, the
same pieces ``make up`` starts (``inferstack_devstack``). Starting vLLM takes about a minute, so it
happens once, and only when a test asks for it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import inferstack_devstack as devstack
from inferstack_devstack import LiveStack, assertdiff
from inferstack_devstack.fleet import LocalFleet


def _awaiting(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: each coroutine it awaits, innermost last (``Task.print_stack`` shows one)."""
    lines = [repr(task)[:300]]
    step: Any = task.get_coro()
    while step is not None and len(lines) < 60:
        frame = getattr(step, "cr_frame", None) or getattr(step, "ag_frame", None) or getattr(step, "gi_frame", None)
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        step = getattr(step, "cr_await", None) or getattr(step, "ag_await", None) or getattr(step, "gi_yieldfrom", None)
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A test failed by pytest-timeout's deadline shows the main thread in ``select``, which says nothing
    about an async test: its report gets every pending asyncio task and what each awaits."""
    report = yield
    if call.excinfo is not None and "from pytest-timeout" in str(call.excinfo.value):
        tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
        report.sections.append(("asyncio tasks at the timeout", "\n".join(map(_awaiting, tasks)) or "none"))
    return report


def pytest_configure(config: pytest.Config) -> None:
    """pytest computes and prints every failed assertion's whole diff when it finds ``CI`` (or
    ``BUILD_NUMBER``) in the environment; ``difflib`` is quadratic, and one failed comparison of two
    large dicts ran a CI test past its 10-minute timeout. Without them pytest truncates the diff as it
    makes it (the explanation below comes first in any case), and nothing of ours reads them."""
    for name in ("CI", "BUILD_NUMBER"):
        os.environ.pop(name, None)


def pytest_assertrepr_compare(op: str, left: object, right: object) -> list[str] | None:
    """A failed ``==`` between large values is explained by where they differ, in a few lines
    (``inferstack_devstack.assertdiff``), in place of pytest's diff."""
    return assertdiff.explain(left, right) if op == "==" else None


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    """This session's logs and key files: concurrent sessions must not rewrite each other's keys.
    Kept after the run (under .cache/, ignored by git): the engine and gateway logs explain failures."""
    devstack.RUN_DIR.mkdir(parents=True, exist_ok=True)
    yield Path(tempfile.mkdtemp(prefix="pytest-", dir=devstack.RUN_DIR))


@pytest.fixture(scope="session")
def local_fleet(run_dir: Path) -> LocalFleet:
    """``make up``'s LoRA adapters for the tiny model (built in this session's directory, in milliseconds)."""
    return LocalFleet(run_dir / "adapters")


@pytest.fixture(scope="session")
def vllm_engine(run_dir: Path, local_fleet: LocalFleet) -> Iterator[str]:
    """Base URL of a real vLLM serving the tiny model as ``tiny-llama`` (prefix caching on), with LoRA as
    ``make up`` runs it: two adapter slots, ``sql-bot@v1`` and ``support-tone@v1`` registered, runtime
    loading allowed. One engine for every end-to-end test: a second one would double the start-up."""
    stack = devstack.Stack(run_dir=run_dir)
    from inferstack_engine import tinymodel_build

    tinymodel_build(devstack.DEFAULT_MODEL_DIR)
    options, env = local_fleet.lora_options()
    try:
        engine = devstack.start_engine(stack, str(devstack.DEFAULT_MODEL_DIR), "tiny-llama", options=options, env=env)
        yield engine.url
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def live_stack(vllm_engine: str, run_dir: Path) -> Iterator[LiveStack]:
    yield from _live_stack(vllm_engine, run_dir, "live")


@pytest.fixture(scope="module")
def fresh_live_stack(vllm_engine: str, run_dir: Path) -> Iterator[LiveStack]:
    """The session's vLLM behind a gateway of the module's own. A gateway remembers every model a
    replica ever listed (one scaled to zero is still a model), and tests load and unload adapters on
    the session's engine: a test that takes its models from ``/v1/models`` (the load tests) would
    also get one that came and went, and wait ``hold_timeout`` for it."""
    yield from _live_stack(vllm_engine, run_dir, "fresh")


def _live_stack(vllm_engine: str, run_dir: Path, name: str) -> Iterator[LiveStack]:
    stack = devstack.Stack(run_dir=run_dir)
    try:
        keys = stack.run_dir / f"{name}-keys.yaml"
        key = devstack.dev_key(keys)
        gateway = devstack.start_gateway(stack, [vllm_engine], env=devstack.auth_env(keys))
        yield LiveStack(
            gateway_url=gateway.url,
            gateway_admin_url=gateway.admin_url,
            vllm_url=vllm_engine,
            model="tiny-llama",
            api_key=key,
        )
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def vllm_pair(vllm_engine: str, run_dir: Path) -> Iterator[list[str]]:
    """Two real vLLM replicas of the tiny model (prefix caching on): the session engine and one more."""
    stack = devstack.Stack(run_dir=run_dir)
    try:
        second = devstack.start_engine(stack, str(devstack.DEFAULT_MODEL_DIR), "tiny-llama")
        yield [vllm_engine, second.url]
    finally:
        stack.stop()
