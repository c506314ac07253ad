"""Kubernetes EndpointSlice discovery: list, then watch; re-list after every reconnect.

One loop, three rules:

1. **List** the Service's EndpointSlices (label ``kubernetes.io/service-name``) and replace the whole
   state with the answer. Then **watch** from the list's ``resourceVersion`` with bookmarks.
2. **Every reconnect starts again at 1.** A watch that ends (server timeout), breaks (dropped
   connection, read timeout) or reports ``410 Gone`` (our resourceVersion is too old) is followed by a
   full re-list. Watching on from a remembered version instead is how vLLM production-stack's pod watch
   missed DELETED events across reconnects and sent traffic to dead pods for hours.
3. Only endpoints whose ``conditions.ready`` is true (absent means true, per the API) and only the
   named port count. Terminating pods are never ready.

While disconnected, the last known set stays (no flapping to empty); the re-list replaces it. Every
failure is logged and told to ``on_error`` (the app counts it: ``inferstack_discovery_errors_total``).
Failures back off exponentially (0.5 s doubling to 10 s), reset by a successful list.

The service account token is re-read from its file at every (re)connect: projected tokens rotate.
RBAC needed: ``get``, ``list``, ``watch`` on ``endpointslices.discovery.k8s.io`` in the namespace
(``rbac.yaml`` next to this file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from ...bounds import LIST_BYTES, WATCH_EVENT_BYTES, read_bounded
from .base import OnChange, OnError, Publisher, base_url, ignore

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class KubernetesApiError(Exception):
    """The API server answered with an error status (RBAC, missing namespace, a broken stream)."""


class WatchEventTooLarge(ValueError):
    """A watch event (one line) longer than the bound: the watch ends, counted, and the loop re-lists."""


class _Gone(Exception):
    """410: the resourceVersion we watch from is no longer in the server's history."""


class KubernetesDiscovery:
    def __init__(
        self,
        namespace: str,
        service: str,
        port_name: str = "http",
        *,
        api_url: str,
        token: str | None = None,
        token_path: Path | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        scheme: str = "http",
        watch_timeout: int = 300,
        read_timeout: float = 120.0,
        backoff: tuple[float, float] = (0.5, 10.0),
        on_error: OnError = ignore,
        max_event_bytes: int = WATCH_EVENT_BYTES,
    ) -> None:
        """``api_url`` like ``https://10.96.0.1:443``; ``token`` or ``token_path`` (re-read per connect)
        authenticate; ``ssl_context`` verifies the API server (``False`` only for tests).
        ``scheme`` is the engines' (http). The server ends each watch after ~``watch_timeout`` s; a watch
        silent for ``read_timeout`` s is treated as dead (bookmarks keep a healthy one talking). A watch
        event longer than ``max_event_bytes`` ends the watch (``WatchEventTooLarge``), as any failure.
        """
        self._namespace, self._service, self._port_name = namespace, service, port_name
        self._api_url = api_url.rstrip("/")
        self._token, self._token_path = token, token_path
        self._ssl, self._scheme = ssl_context, scheme
        self._watch_timeout, self._read_timeout = watch_timeout, read_timeout
        self._backoff = backoff
        self._on_error = on_error
        self._max_event_bytes = max_event_bytes
        self._slices: dict[str, frozenset[str]] = {}

    @classmethod
    def in_cluster(
        cls, namespace: str, service: str, port_name: str = "http", on_error: OnError = ignore
    ) -> KubernetesDiscovery:
        """Configured from the pod's service account and ``KUBERNETES_SERVICE_HOST/PORT``."""
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        return cls(
            namespace,
            service,
            port_name,
            api_url=f"https://{host}:{port}",
            token_path=SERVICE_ACCOUNT / "token",
            ssl_context=context,
            on_error=on_error,
        )

    # -- the loop -----------------------------------------------------------------------------------

    async def run(self, on_change: OnChange) -> None:
        publisher = Publisher(on_change)
        delay = self._backoff[0]
        connector = aiohttp.TCPConnector(ssl=self._ssl)
        async with aiohttp.ClientSession(connector=connector) as session:
            while True:
                try:
                    version = await self._list(session)
                    publisher.publish(self.urls())
                    delay = self._backoff[0]
                    await self._watch(session, version, publisher)
                    log.debug("k8s discovery: watch ended; re-listing")
                except _Gone:
                    log.info("k8s discovery: resourceVersion expired (410); re-listing")
                # (KeyError, TypeError, AttributeError: an answer that is not the API's shape. Whatever
                # the API server or a proxy in front of it sends, the loop re-lists; it never ends.)
                except (
                    aiohttp.ClientError,
                    TimeoutError,
                    KubernetesApiError,
                    ValueError,
                    OSError,
                    KeyError,
                    TypeError,
                    AttributeError,
                ) as exc:
                    log.warning("k8s discovery: %s: %s; re-listing in %.1f s", type(exc).__name__, exc, delay)
                    self._on_error(exc)
                    if publisher.last is None:
                        publisher.publish(frozenset())  # report once at start, even before the first list
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._backoff[1])

    def urls(self) -> frozenset[str]:
        return frozenset().union(*self._slices.values())

    # -- list and watch -----------------------------------------------------------------------------

    def _path(self) -> str:
        selector = quote(f"{SERVICE_NAME_LABEL}={self._service}", safe="")
        return (
            f"{self._api_url}/apis/discovery.k8s.io/v1/namespaces/{self._namespace}/endpointslices"
            f"?labelSelector={selector}"
        )

    def _headers(self) -> dict[str, str]:
        token = self._token_path.read_text().strip() if self._token_path else self._token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _list(self, session: aiohttp.ClientSession) -> str:
        timeout = aiohttp.ClientTimeout(total=30)
        async with session.get(self._path(), headers=self._headers(), timeout=timeout) as resp:
            if resp.status != 200:
                raise KubernetesApiError(f"list endpointslices: HTTP {resp.status}: {(await resp.text())[:300]}")
            body = json.loads(await read_bounded(resp, LIST_BYTES))
        self._slices = {s["metadata"]["name"]: self._ready_urls(s) for s in body.get("items") or []}
        return str(body["metadata"]["resourceVersion"])

    async def _watch(self, session: aiohttp.ClientSession, version: str, publisher: Publisher) -> None:
        url = (
            f"{self._path()}&watch=1&allowWatchBookmarks=true&resourceVersion={quote(version)}"
            f"&timeoutSeconds={self._watch_timeout}"
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._read_timeout)
        async with session.get(url, headers=self._headers(), timeout=timeout) as resp:
            if resp.status == 410:
                raise _Gone
            if resp.status != 200:
                raise KubernetesApiError(f"watch endpointslices: HTTP {resp.status}: {(await resp.text())[:300]}")
            async for event in _json_lines(resp.content, self._max_event_bytes):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise KubernetesApiError(f"watch error event: {obj.get('message', obj)}")
                if kind == "BOOKMARK":
                    continue  # keeps the stream alive; we re-list on reconnect, so its version is not needed
                name = obj["metadata"]["name"]
                if kind in ("ADDED", "MODIFIED"):
                    self._slices[name] = self._ready_urls(obj)
                elif kind == "DELETED":
                    self._slices.pop(name, None)
                publisher.publish(self.urls())

    def _ready_urls(self, endpoint_slice: dict[str, Any]) -> frozenset[str]:
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            return frozenset()  # FQDN slices are not pod IPs
        ports = [p.get("port") for p in endpoint_slice.get("ports") or [] if (p.get("name") or "") == self._port_name]
        if not ports or ports[0] is None:
            return frozenset()
        return frozenset(
            base_url(self._scheme, address, int(ports[0]))
            for endpoint in endpoint_slice.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready") is not False
            for address in endpoint.get("addresses") or []
        )


async def _json_lines(stream: aiohttp.StreamReader, limit: int) -> AsyncIterator[Any]:
    """One JSON value per line; lines may be longer than aiohttp's readline limit (big slices), but not
    than ``limit`` bytes: a longer one raises ``WatchEventTooLarge`` as soon as that many bytes of it
    arrived, so a server (or a proxy in front of it) sending a line without end does not grow memory.
    A line's parts are joined once, at its end (not the buffer grown per chunk: quadratic)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            size += end - start
            if size > limit:
                raise WatchEventTooLarge(f"a watch event of more than {limit} bytes")
            parts.append(chunk[start:end])
            line = b"".join(parts)
            parts.clear()
            size = 0
            if line.strip():
                yield json.loads(line)
            start = end + 1
        size += len(chunk) - start
        if size > limit:
            raise WatchEventTooLarge(f"a watch event of more than {limit} bytes")
        parts.append(chunk[start:])
    line = b"".join(parts)
    with contextlib.suppress(ValueError):
        if line.strip():
            yield json.loads(line)
