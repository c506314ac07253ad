"""``GET /v1/models``: the models the fleet serves, and the declared ones scaled to zero."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .. import gateway

router = APIRouter()


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    running = gateway.of(request)
    cluster, catalog = running.cluster, running.catalog
    cards = cluster.model_cards()
    # The names engines know adapter versions by are the gateway's business: clients see the adapter.
    internal = catalog.declared() - catalog.models if catalog is not None else set()
    cards = [card for card in cards if card["id"] not in internal]
    if catalog is not None:
        # Every catalogued model and adapter (with its `parent`), whatever its replicas.
        listed = {card["id"] for card in cards}
        cards += [card for card in catalog.cards() if card["id"] not in listed]
    listed = {card["id"] for card in cards} | internal
    # Models scaled to zero still exist: list them, so clients do not see them vanish.
    cards += [{"id": m, "object": "model", "owned_by": "inferstack"} for m in sorted(cluster.known_models - listed)]
    return {"object": "list", "data": sorted(cards, key=lambda card: str(card["id"]))}
