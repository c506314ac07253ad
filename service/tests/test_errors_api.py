"""Every error the gateway reports: status and OpenAI-shaped body, no internals."""

from __future__ import annotations

import httpx
import pytest

from inferstack_fake_engine import EngineConfig, running_engine

from .gateway_harness import free_port, running_gateway


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    assert "Traceback" not in resp.text
    assert resp.headers.get("x-request-id")


async def test_unknown_model_with_no_upstream_is_404() -> None:
    async with running_gateway([f"http://127.0.0.1:{free_port()}"], wait_ready=False) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            resp = await client.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user"}]})
            assert_openai_error(resp, 404, "model_not_found", "model")
            ready = await client.get("/readyz")
            assert ready.status_code == 503


async def test_integers_beyond_64_bits_are_no_server_error() -> None:
    big = b"123456789012345678901234567890"
    bodies = [
        b'{"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "temperature": 0, "top_k": %s}' % big,
        b'{"model": "fake-model", "prompt": "x", "temperature": 1e30, "seed": %s, "max_tokens": 4}' % big,
        b'{"model": "fake-model", "input": "x", "dimensions": -%s}' % big,
    ]
    paths = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    async with (
        running_engine(EngineConfig()) as engine,
        running_gateway([engine]) as (url, _),
        httpx.AsyncClient(base_url=url) as client,
    ):
        for path, body in zip(paths, bodies, strict=True):
            resp = await client.post(path, content=body, headers={"content-type": "application/json"})
            assert resp.status_code < 500, (path, resp.text)
            if resp.status_code >= 400:
                assert_openai_error(resp, resp.status_code)


async def test_declared_model_without_replica_is_503_after_the_hold() -> None:
    async with (
        running_gateway([f"http://127.0.0.1:{free_port()}"], wait_ready=False, models=["m"], hold_timeout=0.2) as (
            url,
            app,
        ),
        httpx.AsyncClient(base_url=url) as client,
    ):
        resp = await client.post("/v1/completions", json={"model": "m", "prompt": "x"})
        assert_openai_error(resp, 503, "no_healthy_upstream")
        listed = (await client.get("/v1/models")).json()
        assert [m["id"] for m in listed["data"]] == ["m"]
        metrics = (await client.get(url.admin + "/metrics")).text
        assert 'inferstack_held_requests{model="m"} 0.0' in metrics


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        ("/v1/chat/completions", b'{"model": 3, "messages": []}', "model"),
        ("/v1/chat/completions", b'{"model": "m"}', "messages"),
        ("/v1/chat/completions", b'{"model": "m", "messages": "hello"}', "messages"),
        ("/v1/chat/completions", b'{"model": "m", "messages": [{}], "stream": "yes"}', "stream"),
        ("/v1/completions", b'{"model": "m"}', "prompt"),
        ("/v1/embeddings", b'{"model": "m"}', "input"),
        ("/v1/embeddings", b'{"model": "m", "input": "x", "stream": true}', "stream"),
    ],
)
async def test_invalid_requests_are_400(path: str, body: bytes, param: str | None) -> None:
    async with running_gateway([f"http://127.0.0.1:{free_port()}"], wait_ready=False, models=["m"]) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            resp = await client.post(path, content=body, headers={"content-type": "application/json"})
            assert_openai_error(resp, 400, param=param)
            assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_body_over_the_limit_is_413_whether_declared_or_streamed() -> None:
    async with (
        running_gateway([f"http://127.0.0.1:{free_port()}"], wait_ready=False, max_body_bytes=2048) as (
            url,
            _,
        ),
        httpx.AsyncClient(base_url=url) as client,
    ):
        big = b'{"model": "m", "prompt": "' + b"x" * 4096 + b'"}'
        resp = await client.post("/v1/completions", content=big)
        assert_openai_error(resp, 413, "request_too_large")

        async def chunks():  # no content-length: the limit is enforced while reading
            for _ in range(8):
                yield b"x" * 512

        resp = await client.post("/v1/completions", content=chunks())
        assert_openai_error(resp, 413, "request_too_large")


async def test_unknown_route_and_wrong_method_are_openai_shaped() -> None:
    async with running_gateway([f"http://127.0.0.1:{free_port()}"], wait_ready=False) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            resp = await client.get("/v1/chat/completions")
            assert resp.status_code == 405
            assert resp.json()["error"]["code"] == "method_not_allowed"
            resp = await client.post("/v1/nothing", json={})
            assert resp.status_code == 404
            assert resp.json()["error"]["code"] == "not_found"


async def test_request_id_is_accepted_and_returned() -> None:
    async with running_gateway([f"http://127.0.0.1:{free_port()}"], wait_ready=False) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            resp = await client.post("/v1/completions", content=b"{", headers={"x-request-id": "abc-123"})
            assert resp.headers["x-request-id"] == "abc-123"


async def test_a_full_hold_queue_answers_429_at_once() -> None:
    import asyncio

    async with (
        running_gateway(
            [f"http://127.0.0.1:{free_port()}"], wait_ready=False, models=["m"], hold_timeout=1.5, max_held_requests=1
        ) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        held = asyncio.create_task(client.post("/v1/completions", json={"model": "m", "prompt": "x"}))
        async with asyncio.timeout(5):
            while 'inferstack_held_requests{model="m"} 1.0' not in (await client.get(url.admin + "/metrics")).text:
                await asyncio.sleep(0.02)
        resp = await client.post("/v1/completions", json={"model": "m", "prompt": "y"})
        assert_openai_error(resp, 429, "rate_limit_exceeded")
        assert resp.headers["retry-after"] == "1"
        assert (await held).status_code == 503  # the held one still gets its answer when the hold ends
