"""The fake engine's HTTP API: vLLM's OpenAI routes plus ``/_fake/*`` controls for tests.

Request path: record -> injected faults -> validate -> generate (backend) -> respond or stream.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator
from hashlib import shake_256
from typing import Any

import orjson
from aiohttp import web

from . import shapes
from .backends import Backend, make_backend
from .config import EngineConfig
from .lora import LoraError, Loras
from .metrics import render
from .shapes import Kind, StreamChunks
from .text import count_tokens, prompt_text, render_chat


class EngineState:
    """Everything one fake engine owns; ``app[STATE]``."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.behaviour = config.behaviour
        self.backend: Backend = make_backend(config)
        self.requests: deque[dict[str, Any]] = deque(maxlen=config.record_requests)
        self.successes: Counter[str] = Counter()
        self.health_checks = 0  # GET /health answered: tests wait for a gateway's active check with it
        self.rng = random.Random(config.seed)
        self.loras: Loras | None = None
        if config.max_loras > 0:
            self.loras = Loras(config.max_loras)
            for name, path in config.lora_modules:  # loaded at start, as vLLM's --lora-modules
                self.loras.registered[name] = path
                self.loras.resident[name] = None
                if len(self.loras.resident) > config.max_loras:
                    self.loras.resident.popitem(last=False)


STATE = web.AppKey("state", EngineState)


def create_app(config: EngineConfig | None = None) -> web.Application:
    """A fake engine. Its behaviour is ``config.behaviour``: mutate it (or POST /_fake/config) to change it."""
    state = EngineState(config or EngineConfig())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/_fake/config", _get_config)
    app.router.add_post("/_fake/config", _set_config)
    app.router.add_get("/_fake/requests", _get_requests)
    app.router.add_get("/_fake/lora", _get_lora)
    app.router.add_get("/_fake/health_checks", _get_health_checks)
    if state.loras is not None and state.config.runtime_lora_updating:
        app.router.add_post("/v1/load_lora_adapter", _load_lora)
    app.router.add_delete("/_fake/requests", _clear_requests)
    app.on_response_prepare.append(_echo_request_id)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        state.backend.start()
        yield
        await state.backend.stop()

    app.cleanup_ctx.append(lifespan)
    return app


# -- plain routes -------------------------------------------------------------------------------------
async def _health(request: web.Request) -> web.Response:
    request.app[STATE].health_checks += 1
    return web.Response(status=200)


async def _get_health_checks(request: web.Request) -> web.Response:
    return _json({"health_checks": request.app[STATE].health_checks})


async def _models(request: web.Request) -> web.Response:
    cfg = request.app[STATE].config
    data = [
        {
            "id": m,
            "object": "model",
            "created": 0,
            "owned_by": "vllm",
            "root": cfg.models[0],
            "parent": None,
            "max_model_len": cfg.max_model_len,
        }
        for m in cfg.models
    ]
    loras = request.app[STATE].loras
    if loras is not None:
        data += [
            {"id": name, "object": "model", "created": 0, "owned_by": "vllm", "root": path, "parent": cfg.models[0]}
            for name, path in loras.registered.items()
        ]
    return _json({"object": "list", "data": data})


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    snap = state.backend.snapshot()
    b = state.behaviour
    overrides = {"running": b.report_running, "waiting": b.report_waiting, "kv_cache_usage": b.report_kv_cache_usage}
    snap = type(snap)(**{**snap.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    body = render(state.config.models[0], snap, state.successes, state.loras)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.headers.get("x-request-id")
    if rid is not None:
        response.headers["x-request-id"] = rid


async def _load_lora(request: web.Request) -> web.Response:
    """``POST /v1/load_lora_adapter``: vLLM's checks and answers; the adapter becomes resident."""
    state = request.app[STATE]
    loras = state.loras
    assert loras is not None
    try:
        body = orjson.loads(await request.read())
        if not isinstance(body, dict):
            raise orjson.JSONDecodeError("expected an object", "", 0)
        name, path = str(body.get("lora_name") or ""), str(body.get("lora_path") or "")
        loras.register(name, path, state.config.models)
    except orjson.JSONDecodeError:
        return _bad_request("request body must be a JSON object", None)
    except LoraError as err:
        return _json(shapes.error_body(str(err), err.status), status=err.status)
    await loras.load(name, state.behaviour.lora_load_delay)
    return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")


# -- test controls ------------------------------------------------------------------------------------
async def _get_config(request: web.Request) -> web.Response:
    return _json(request.app[STATE].behaviour.as_dict())


async def _set_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        changes = orjson.loads(await request.read())
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object of behaviour fields")
        state.behaviour.update(changes)
    except (ValueError, orjson.JSONDecodeError) as exc:
        return _json(shapes.error_body(str(exc), 400), status=400)
    return _json(state.behaviour.as_dict())


async def _get_lora(request: web.Request) -> web.Response:
    loras = request.app[STATE].loras
    return _json(loras.as_dict() if loras is not None else None)


async def _get_requests(request: web.Request) -> web.Response:
    return _json(list(request.app[STATE].requests))


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


# -- OpenAI routes ------------------------------------------------------------------------------------
async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "chat")


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "completions")


async def _generate(request: web.Request, kind: Kind) -> web.StreamResponse:
    state = request.app[STATE]
    payload, early = await _admit(request, state)
    if early is not None:
        return early
    cfg, b = state.config, state.behaviour
    model = payload.get("model")
    if model not in cfg.models and (state.loras is None or model not in state.loras.registered):
        return _json(shapes.error_body(f"The model `{model}` does not exist.", 404, "model"), status=404)
    if kind == "chat":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return _bad_request("messages must be a non-empty list", "messages")
        prompt = render_chat(m for m in messages if isinstance(m, dict))
    else:
        if "prompt" not in payload:
            return _bad_request("prompt is required", "prompt")
        prompt = prompt_text(payload["prompt"])
    prompt_tokens = count_tokens(prompt)
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return _bad_request("max_tokens must be an integer >= 1", "max_tokens")
    budget = cfg.max_model_len - prompt_tokens
    if budget < 1 or (max_tokens is not None and max_tokens > budget):
        return _bad_request(
            f"This model's maximum context length is {cfg.max_model_len} tokens. However, you requested "
            f"{prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens or 0} in the completion).",
            "max_tokens",
        )
    n = b.output_tokens if max_tokens is None else min(max_tokens, b.output_tokens)
    finish = "length" if max_tokens is not None and n == max_tokens else "stop"
    loras = state.loras
    adapter = model if loras is not None and model in loras.registered else None
    if loras is not None and adapter is not None:  # a slot (and a load, when evicted) first
        await loras.acquire(adapter, b.lora_load_delay)
    try:
        request_id = shapes.new_id(kind)
        tokens = state.backend.generate(model, prompt, prompt_tokens, n)
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = StreamChunks(kind, request_id, model)
            return await _stream(request, state, tokens, chunks, n, finish, prompt_tokens, include_usage)
        fail_after = b.fail_after_tokens
        fail_mode = b.fail_mode
        try:
            async for count in tokens:
                if 0 <= fail_after < n and count >= fail_after:
                    return await _break(request, state, fail_mode, None)
        finally:
            await tokens.aclose()
        state.successes[finish] += 1
        return _json(shapes.completion_body(kind, request_id, model, prompt_tokens, n, finish))
    finally:
        if loras is not None and adapter is not None:
            await loras.release(adapter)


async def _stream(
    request: web.Request,
    state: EngineState,
    tokens: AsyncGenerator[int, None],
    chunks: StreamChunks,
    n: int,
    finish: str,
    prompt_tokens: int,
    include_usage: bool,
) -> web.StreamResponse:
    b = state.behaviour
    fail_after, fail_mode = b.fail_after_tokens, b.fail_mode
    limit = fail_after if 0 <= fail_after < n else n
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await resp.prepare(request)
    sent = 0
    try:
        async for count in tokens:
            stop = min(count, limit)
            if stop > sent:
                # vLLM's chat stream opens with the role chunk once the first token exists.
                head = chunks.role() if sent == 0 else b""
                await resp.write(head + chunks.tokens(sent, stop, n, finish))
                sent = stop
            if count >= limit:
                break
    finally:
        await tokens.aclose()
    if limit < n:
        return await _break(request, state, fail_mode, resp)
    if include_usage:
        await resp.write(chunks.usage(prompt_tokens, n))
    await resp.write(shapes.DONE)
    state.successes[finish] += 1
    return resp


async def _embeddings(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    payload, early = await _admit(request, state)
    if early is not None:
        return early
    model = payload.get("model")
    if model not in state.config.models:
        return _json(shapes.error_body(f"The model `{model}` does not exist.", 404, "model"), status=404)
    raw = payload.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        return _bad_request("input must be a string or a non-empty list", "input")
    texts = [prompt_text(x) for x in raw]
    dim = state.config.embedding_dim
    vectors = [_embedding(t, dim) for t in texts]
    return _json(shapes.embeddings_body(model, vectors, sum(count_tokens(t) for t in texts)))


# -- helpers ------------------------------------------------------------------------------------------
async def _admit(request: web.Request, state: EngineState) -> tuple[dict[str, Any], web.StreamResponse | None]:
    """Read and record the request, then apply the request-level faults. Returns (payload, early answer)."""
    body = await request.read()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    state.requests.append(
        {
            "method": request.method,
            "path": request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": payload if payload is not None else body.decode(errors="replace"),
        }
    )
    b = state.behaviour
    if b.disconnect:
        _abort(request)
        return {}, web.Response(status=500)
    if b.first_byte_delay > 0:
        await asyncio.sleep(b.first_byte_delay)
    if b.hang:
        await asyncio.Event().wait()  # until the client goes away (handler cancellation) or shutdown
    if b.error_status and state.rng.random() < b.error_rate:
        state.successes["error"] += 1
        if b.error_body:
            return {}, web.Response(body=b.error_body.encode(), status=b.error_status, content_type="application/json")
        msg = "Injected failure (fake engine)."
        return {}, _json(shapes.error_body(msg, b.error_status), status=b.error_status)
    if not isinstance(payload, dict):
        return {}, _bad_request("request body must be a JSON object", None)
    return payload, None


async def _break(
    request: web.Request,
    state: EngineState,
    mode: str,
    resp: web.StreamResponse | None,
) -> web.StreamResponse:
    """Fail a response that is under way (``fail_after_tokens``)."""
    state.successes["error"] += 1
    if mode == "stall":
        await asyncio.Event().wait()
    if mode == "error_event" and resp is not None:
        await resp.write(shapes.error_event("Injected failure mid-stream (fake engine)."))
        await resp.write(shapes.DONE)
        return resp
    if mode == "error_event":
        return _json(shapes.error_body("Injected failure (fake engine).", 500), status=500)
    _abort(request)
    return resp if resp is not None else web.Response(status=500)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _embedding(text: str, dim: int) -> list[float]:
    """A deterministic vector from the text's hash: equal texts, equal vectors."""
    return [round(byte / 127.5 - 1.0, 6) for byte in shake_256(text.encode()).digest(dim)]


def _bad_request(message: str, param: str | None) -> web.Response:
    return _json(shapes.error_body(message, 400, param), status=400)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")
