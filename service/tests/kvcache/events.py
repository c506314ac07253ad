"""KV event messages shaped as vLLM's msgspec encoder writes them (tagged maps in an array batch)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgpack
import zmq.asyncio

from ..test_relay_fake_engine import metric


def stored(hashes: list[int], tokens: list[int], block_size: int, parent: int | None = None) -> dict[str, Any]:
    return {
        "type": "BlockStored",
        "block_hashes": hashes,
        "parent_block_hash": parent,
        "token_ids": tokens,
        "block_size": block_size,
        "lora_id": None,
        "medium": "GPU",
        "lora_name": None,
    }


def removed(hashes: list[int]) -> dict[str, Any]:
    return {"type": "BlockRemoved", "block_hashes": hashes, "medium": "GPU"}


CLEARED: dict[str, Any] = {"type": "AllBlocksCleared"}


def frames(seq: int, *events: dict[str, Any], ts: float = 0.0, topic: bytes = b"kv") -> list[bytes]:
    return [topic, seq.to_bytes(8, "big"), msgpack.packb([ts, list(events), 0])]


async def publish_until_indexed(
    pub: zmq.asyncio.Socket, client: httpx.AsyncClient, admin: str, blocks: int, event: dict[str, Any]
) -> None:
    """Publish ``event`` (rising sequence numbers) until the gateway's index holds ``blocks`` blocks:
    ZMQ drops what is published before the subscription is up."""
    seq, end = 0, time.monotonic() + 10
    while metric((await client.get(admin + "/metrics")).text, "inferstack_kv_index_blocks") < blocks:
        assert time.monotonic() < end, "the gateway never applied a KV event"
        await pub.send_multipart(frames(seq, event))
        seq += 1
        await asyncio.sleep(0.05)
