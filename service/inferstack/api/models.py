"""``GET /v1/models``: the models the fleet serves, and the declared ones scaled to zero."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .. import gateway

router = APIRouter()


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    cluster = gateway.of(request).cluster
    cards = cluster.model_cards()
    listed = {card["id"] for card in cards}
    # Models scaled to zero still exist: list them, so clients do not see them vanish.
    cards += [{"id": m, "object": "model", "owned_by": "inferstack"} for m in sorted(cluster.known_models - listed)]
    return {"object": "list", "data": cards}
