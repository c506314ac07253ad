"""KV event messages shaped as vLLM's msgspec encoder writes them (tagged maps in an array batch)."""

from __future__ import annotations

from typing import Any

import msgpack


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
