"""DNS discovery with an injected resolver, and the static list."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from inferstack.config import Settings
from inferstack.upstream.discovery import (
    DnsDiscovery,
    KubernetesDiscovery,
    StaticDiscovery,
    from_settings,
    getaddrinfo_resolver,
)


class ScriptedResolver:
    """Answers from ``answers`` in turn (the last one repeats); an exception in the list is raised."""

    def __init__(self, *answers: list[str] | BaseException) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, name: str, port: int) -> list[str]:
        assert (name, port) == ("engines.inference.svc.cluster.local", 8000)
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(provider: DnsDiscovery | StaticDiscovery) -> AsyncIterator[list[frozenset[str]]]:
    seen: list[frozenset[str]] = []
    task = asyncio.create_task(provider.run(seen.append))
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def dns(resolver: ScriptedResolver, **kwargs: Any) -> DnsDiscovery:
    return DnsDiscovery("engines.inference.svc.cluster.local", 8000, interval=0.01, resolver=resolver, **kwargs)


async def test_dns_reports_each_new_set_once() -> None:
    resolver = ScriptedResolver(
        ["10.0.0.1", "10.0.0.2"], ["10.0.0.2", "10.0.0.1"], ["10.0.0.2"], ["10.0.0.2", "fd00::3"]
    )
    async with running(dns(resolver)) as seen:
        await eventually(lambda: resolver.calls >= 6)
    assert seen == [
        {"http://10.0.0.1:8000", "http://10.0.0.2:8000"},
        {"http://10.0.0.2:8000"},  # order of records is not a change; a replica gone within one interval
        {"http://10.0.0.2:8000", "http://[fd00::3]:8000"},
    ]


async def test_dns_keeps_the_last_good_set_when_the_resolver_fails() -> None:
    temporary = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    unreachable = OSError("network unreachable")
    resolver = ScriptedResolver(["10.0.0.1"], temporary, unreachable, ["10.0.0.1", "10.0.0.2"])
    errors: list[BaseException] = []
    async with running(dns(resolver, on_error=errors.append)) as seen:
        await eventually(lambda: resolver.calls >= 5)
    assert seen == [{"http://10.0.0.1:8000"}, {"http://10.0.0.1:8000", "http://10.0.0.2:8000"}]
    assert errors == [temporary, unreachable]  # told, so the app counts them; answers are not errors


async def test_dns_no_such_name_means_zero_replicas() -> None:
    # A headless Service with no ready pods answers NXDOMAIN: that is scale to zero, not an outage.
    resolver = ScriptedResolver(["10.0.0.1"], socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    async with running(dns(resolver)) as seen:
        await eventually(lambda: len(seen) >= 2)
    assert seen == [{"http://10.0.0.1:8000"}, frozenset()]


async def test_dns_reports_once_at_start_even_when_the_first_lookup_fails() -> None:
    resolver = ScriptedResolver(socket.gaierror(socket.EAI_AGAIN, "try again"), ["10.0.0.1"])
    async with running(dns(resolver)) as seen:
        await eventually(lambda: len(seen) >= 2)
    assert seen == [frozenset(), {"http://10.0.0.1:8000"}]


async def test_dns_a_hanging_resolver_times_out_and_keeps_the_set() -> None:
    class Hanging(ScriptedResolver):
        async def __call__(self, name: str, port: int) -> list[str]:
            self.calls += 1
            if self.calls == 1:
                return ["10.0.0.1"]
            await asyncio.Event().wait()
            return []

    resolver = Hanging()
    async with running(dns(resolver, resolve_timeout=0.05)) as seen:
        await eventually(lambda: resolver.calls >= 3)
    assert seen == [{"http://10.0.0.1:8000"}]


async def test_system_resolver_resolves_localhost() -> None:
    assert "127.0.0.1" in await getaddrinfo_resolver("localhost", 8000)


async def test_static_reports_its_list_once_and_runs_until_cancelled() -> None:
    provider = StaticDiscovery(["http://a:8000/", " http://b:8000", "", "http://a:8000"])
    async with running(provider) as seen:
        await eventually(lambda: len(seen) == 1)
        await asyncio.sleep(0.05)
    assert seen == [{"http://a:8000", "http://b:8000"}]


def test_from_settings_picks_the_configured_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(from_settings(Settings(upstreams=["http://127.0.0.1:8000"])), StaticDiscovery)
    assert isinstance(from_settings(Settings(discovery="dns", dns_name="engines")), DnsDiscovery)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr("ssl.SSLContext.load_verify_locations", lambda *args, **kwargs: None)  # no CA file here
    assert isinstance(from_settings(Settings(discovery="k8s", k8s_service="engines")), KubernetesDiscovery)
