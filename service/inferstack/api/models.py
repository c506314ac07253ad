"""``GET /v1/models``: the models the fleet serves, and the declared ones scaled to zero."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from .. import gateway

router = APIRouter()
# ``parent`` names an adapter's base model (a model id, never a path).
PUBLIC_CARD_FIELDS = frozenset({"id", "object", "created", "owned_by", "parent", "max_model_len"})


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
    # Only what a client needs: vLLM's card also names the weights' path (``root``).
    public = [{k: v for k, v in card.items() if k in PUBLIC_CARD_FIELDS} for card in cards]
    return {"object": "list", "data": sorted(public, key=lambda card: str(card["id"]))}
