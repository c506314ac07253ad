"""A fake Kubernetes API server for EndpointSlices: list, watch streams, 410 and dropped connections.

It keeps no event history, like a server whose history has been compacted: a client that reconnects
and watches on from an old resourceVersion never hears about what changed while it was away. Only a
re-list shows it. That is the production-stack failure the tests pin down.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PATH = "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"


def endpoint_slice(
    name: str, endpoints: dict[str, bool | None], port: int = 8000, port_name: str = "http", address_type: str = "IPv4"
) -> dict[str, Any]:
    """A slice with one endpoint per address; ``None`` leaves ``conditions.ready`` out (means ready)."""
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "engines"}},
        "addressType": address_type,
        "ports": [
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
            {"name": port_name, "port": port, "protocol": "TCP"},
        ],
        "endpoints": [
            {"addresses": [address], "conditions": {} if ready is None else {"ready": ready}}
            for address, ready in endpoints.items()
        ],
    }


@dataclass
class FakeKubernetesApi:
    token: str = "test-token"
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    version: int = 100
    list_calls: int = 0
    watch_versions: list[str] = field(default_factory=list)
    requests: list[web.Request] = field(default_factory=list)
    forbidden: bool = False
    gone_next_watch: bool = False
    _watchers: list[asyncio.Queue[dict[str, Any] | bytes | None]] = field(default_factory=list)
    _connections: list[web.Request] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PATH, self._handle)
        return app

    # -- what the tests do to the cluster ----------------------------------------------------------

    def put(self, obj: dict[str, Any], notify: bool = True) -> None:
        name = obj["metadata"]["name"]
        kind = "MODIFIED" if name in self.slices else "ADDED"
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.slices[name] = obj
        if notify:
            self._send({"type": kind, "object": obj})

    def delete(self, name: str, notify: bool = True) -> None:
        obj = self.slices.pop(name)
        self.version += 1
        if notify:
            self._send({"type": "DELETED", "object": obj})

    def bookmark(self) -> None:
        self._send({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(self.version)}}})

    def expire_watches(self) -> None:
        """End every watch cleanly, as the server does when ``timeoutSeconds`` runs out."""
        for queue in self._watchers:
            queue.put_nowait(None)

    def drop_connections(self) -> None:
        """Cut every watch connection mid-stream (a network failure, an API server restart)."""
        for request, queue in zip(self._connections, self._watchers, strict=True):
            if request.transport is not None:
                request.transport.close()
            queue.put_nowait(None)  # and let the handler finish

    @property
    def watching(self) -> int:
        return len(self._watchers)

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` to every watch as it is (no newline added): part of a line, or several."""
        for queue in self._watchers:
            queue.put_nowait(data)

    def _send(self, event: dict[str, Any]) -> None:
        for queue in self._watchers:
            queue.put_nowait(event)

    # -- the API ------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        if self.forbidden:
            return web.json_response({"kind": "Status", "code": 403, "message": "forbidden by RBAC"}, status=403)
        if request.query.get("labelSelector") != "kubernetes.io/service-name=engines":
            return web.json_response({"kind": "Status", "code": 400}, status=400)
        if request.query.get("watch") in ("1", "true"):
            return await self._watch(request)
        self.list_calls += 1
        return web.json_response(
            {
                "kind": "EndpointSliceList",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"resourceVersion": str(self.version)},
                "items": list(self.slices.values()),
            }
        )

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        self.watch_versions.append(request.query.get("resourceVersion", ""))
        assert request.query.get("allowWatchBookmarks") == "true"
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if self.gone_next_watch:  # what a real server does: 200, then an ERROR event with a 410 Status
            self.gone_next_watch = False
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
            await response.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return response
        queue: asyncio.Queue[dict[str, Any] | bytes | None] = asyncio.Queue()
        self._watchers.append(queue)
        self._connections.append(request)
        try:
            while (event := await queue.get()) is not None:
                await response.write(event if isinstance(event, bytes) else json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self._watchers.remove(queue)
            self._connections.remove(request)
        return response
