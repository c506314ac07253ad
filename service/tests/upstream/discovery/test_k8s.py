"""EndpointSlice discovery against a fake API server: the sets it reports, across events and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from inferstack.upstream.discovery import KubernetesApiError, KubernetesDiscovery, WatchEventTooLarge

from .fake_k8s import FakeKubernetesApi, endpoint_slice

A, B, C = "http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"


class Recorder:
    def __init__(self) -> None:
        self.sets: list[frozenset[str]] = []

    def __call__(self, urls: frozenset[str]) -> None:
        self.sets.append(urls)

    @property
    def current(self) -> frozenset[str] | None:
        return self.sets[-1] if self.sets else None


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeKubernetesApi, str]]:
    fake = FakeKubernetesApi()
    fake.put(endpoint_slice("engines-abc", {"10.0.0.1": True, "10.0.0.2": True}))
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def running(url: str, token: str = "test-token", **kwargs: object) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    provider = KubernetesDiscovery(
        "inference", "engines", "http", api_url=url, token=token, backoff=(0.05, 0.2), **kwargs
    )  # type: ignore[arg-type]
    task = asyncio.create_task(provider.run(recorder))
    try:
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_lists_then_follows_added_modified_deleted(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    async with running(url) as seen:
        await eventually(lambda: seen.current == {A, B} and fake.watching == 1)
        assert fake.watch_versions == ["101"]  # watches from the list's resourceVersion

        fake.put(endpoint_slice("engines-def", {"10.0.0.3": True}))
        await eventually(lambda: seen.current == {A, B, C})

        fake.put(endpoint_slice("engines-abc", {"10.0.0.1": True, "10.0.0.2": False}))  # B not ready
        await eventually(lambda: seen.current == {A, C})

        fake.delete("engines-def")
        await eventually(lambda: seen.current == {A})
    assert seen.sets == [{A, B}, {A, B, C}, {A, C}, {A}]
    assert fake.list_calls == 1


async def test_only_ready_endpoints_and_the_named_port(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    fake.put(endpoint_slice("engines-abc", {"10.0.0.1": None, "10.0.0.2": False, "10.0.0.3": True}, port=8123))
    fake.put(endpoint_slice("engines-v6", {"fd00::7": True}, address_type="IPv6"))
    fake.put(endpoint_slice("engines-other-port", {"10.0.0.9": True}, port_name="grpc"))
    async with running(url) as seen:
        await eventually(lambda: seen.current is not None)
    # ready missing counts as ready; false does not; IPv6 gets brackets; a slice without "http" adds nothing
    assert seen.current == {"http://10.0.0.1:8123", "http://10.0.0.3:8123", "http://[fd00::7]:8000"}


async def test_bookmarks_and_unchanged_sets_report_nothing(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    async with running(url) as seen:
        await eventually(lambda: fake.watching == 1)
        fake.bookmark()
        fake.put(endpoint_slice("engines-abc", {"10.0.0.2": True, "10.0.0.1": True}))  # same members
        fake.put(endpoint_slice("engines-def", {"10.0.0.3": True}))  # a change, to know the others were read
        await eventually(lambda: seen.current == {A, B, C})
    assert seen.sets == [{A, B}, {A, B, C}]


async def test_deleted_while_disconnected_is_seen_by_the_relist(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    async with running(url) as seen:
        await eventually(lambda: seen.current == {A, B} and fake.watching == 1)
        # The pod behind B goes away while the watch is down: no event reaches us, ever.
        fake.put(endpoint_slice("engines-abc", {"10.0.0.1": True}), notify=False)
        fake.drop_connections()
        await eventually(lambda: seen.current == {A} and fake.watching == 1)
    assert fake.list_calls == 2
    assert seen.sets == [{A, B}, {A}]  # no flap to empty while disconnected


async def test_whole_slice_deleted_while_disconnected(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    fake.put(endpoint_slice("engines-def", {"10.0.0.3": True}))
    async with running(url) as seen:
        await eventually(lambda: seen.current == {A, B, C} and fake.watching == 1)
        fake.delete("engines-def", notify=False)
        fake.drop_connections()
        await eventually(lambda: seen.current == {A, B})


async def test_410_gone_triggers_a_relist(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    async with running(url) as seen:
        await eventually(lambda: fake.watching == 1)
        fake.put(endpoint_slice("engines-def", {"10.0.0.3": True}), notify=False)
        fake.gone_next_watch = True
        fake.expire_watches()  # clean end: re-list, watch -> 410 -> re-list again, watch
        await eventually(lambda: seen.current == {A, B, C} and fake.watching == 1)
    assert fake.list_calls == 3
    assert not fake.gone_next_watch


async def test_a_clean_watch_timeout_also_relists(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    async with running(url) as seen:
        await eventually(lambda: fake.watching == 1)
        fake.delete("engines-abc", notify=False)
        fake.expire_watches()
        await eventually(lambda: seen.current == frozenset())
    assert fake.list_calls == 2


async def test_api_errors_back_off_and_recover(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    fake.forbidden = True
    errors: list[BaseException] = []
    async with running(url, on_error=errors.append) as seen:
        await eventually(lambda: fake.list_calls == 0 and len(fake.requests) >= 3)
        assert seen.sets == [frozenset()]  # reported once at start, even with nothing known yet
        # Each failed list is told (the app counts them): a discovery that keeps failing is visible.
        assert len(errors) >= 3 and all(isinstance(e, KubernetesApiError) for e in errors)
        fake.forbidden = False
        await eventually(lambda: seen.current == {A, B} and fake.watching == 1)
        told = len(errors)
        fake.put(endpoint_slice("engines-def", {"10.0.0.3": True}))  # the watch works: nothing more told
        await eventually(lambda: seen.current == {A, B, C})
        assert len(errors) == told


async def test_token_is_read_from_its_file_at_every_connect(api: tuple[FakeKubernetesApi, str], tmp_path: Path) -> None:
    fake, url = api
    token_file = tmp_path / "token"
    token_file.write_text("test-token\n")
    recorder = Recorder()
    provider = KubernetesDiscovery("inference", "engines", api_url=url, token_path=token_file, backoff=(0.05, 0.2))
    task = asyncio.create_task(provider.run(recorder))
    try:
        await eventually(lambda: fake.watching == 1)
        fake.token = "rotated"  # the kubelet rotates the projected token; the server stops accepting the old one
        token_file.write_text("rotated")
        fake.put(endpoint_slice("engines-abc", {"10.0.0.1": True}), notify=False)
        fake.drop_connections()
        await eventually(lambda: recorder.current == {A})
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert fake.requests[-1].headers["Authorization"] == "Bearer rotated"


async def test_a_silent_watch_is_abandoned_after_the_read_timeout(api: tuple[FakeKubernetesApi, str]) -> None:
    fake, url = api
    async with running(url, read_timeout=0.3) as seen:
        await eventually(lambda: fake.watching == 1)
        fake.delete("engines-abc", notify=False)  # and the stream goes quiet: no event, no bookmark
        await eventually(lambda: seen.current == frozenset())
    assert fake.list_calls >= 2


async def test_an_answer_not_of_the_apis_shape_is_a_relist_not_the_end_of_discovery(
    api: tuple[FakeKubernetesApi, str],
) -> None:
    # A watch event without metadata, one that is not an object: each ended the discovery task for
    # good (KeyError, AttributeError), leaving the gateway on a frozen set of engines.
    fake, url = api
    async with running(url) as seen:
        for malformed in ({"type": "ADDED", "object": {}}, ["not", "an", "event"]):
            await eventually(lambda: fake.watching == 1)
            lists = fake.list_calls
            fake._send(malformed)  # type: ignore[arg-type]
            await eventually(lambda lists=lists: fake.list_calls == lists + 1 and fake.watching == 1)
        fake.put(endpoint_slice("engines-def", {"10.0.0.3": True}))
        await eventually(lambda: seen.current == {A, B, C})


async def test_a_watch_event_over_the_bound_ends_the_watch_counted_and_re_watches(
    api: tuple[FakeKubernetesApi, str],
) -> None:
    # The line buffer grew with whatever the server sent until a newline: a line without end (a broken
    # proxy, a hostile server) grew the gateway's memory for as long as the watch lasted (300 s).
    fake, url = api
    limit = 256 << 10
    errors: list[BaseException] = []
    async with running(url, on_error=errors.append, max_event_bytes=limit) as seen:
        await eventually(lambda: seen.current == {A, B} and fake.watching == 1)
        # Just under the bound, one event: read as any other.
        big = endpoint_slice("engines-def", {"10.0.0.3": True})
        big["metadata"]["annotations"] = {"pad": "x" * (limit - 1024)}
        fake.put(big)
        await eventually(lambda: seen.current == {A, B, C})
        assert errors == []
        # A line that does not end: 64 KiB at a time, twice the bound, and the connection stays open.
        lists = fake.list_calls
        fake.send_raw(b'{"type": "ADDED", "object": {"metadata": {"name": "engines-pad", "pad": "')
        for _ in range(8):
            fake.send_raw(b"x" * (64 << 10))
        await eventually(lambda: len(errors) == 1 and fake.list_calls == lists + 1 and fake.watching == 1)
        assert isinstance(errors[0], WatchEventTooLarge)
        # A whole line over the bound, newline included, in one write: the same.
        fake.send_raw(b'{"type": "ADDED", "pad": "' + b"y" * limit + b'"}\n')
        await eventually(lambda: len(errors) == 2 and fake.list_calls == lists + 2 and fake.watching == 1)
        assert isinstance(errors[1], WatchEventTooLarge)
        # The re-watch follows events again; the set never flapped.
        fake.delete("engines-def")
        await eventually(lambda: seen.current == {A, B})
    assert seen.sets == [{A, B}, {A, B, C}, {A, B}]
