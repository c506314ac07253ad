"""Where LoRA adapters are: the gateway's record of each replica's adapters, for routing and loading.

What vLLM tells, and what it does not:

- ``/v1/models`` lists every adapter *registered* on a replica (``--lora-modules``, or loaded with
  ``POST /v1/load_lora_adapter``), each with its base as ``parent``. An adapter stays listed after
  the engine evicted it from its slots, so "listed" means "the engine can load it by name", not
  "it is loaded" (the health check reads it: ``observe_cards``).
- ``vllm:lora_requests_info{max_lora, running_lora_adapters, waiting_lora_adapters}`` names the
  adapters with requests in flight (they are resident) and the slot count; idle adapters are not
  named, which is why a scorer reading only this metric routes at random at low load
  (``observe_lora_info``, from the load scraper).
- What is resident is vLLM's LRU cache of ``max_cpu_loras`` (default ``max_loras``) adapters: a
  request for one not in it loads it from disk and evicts the least recently used. The gateway
  models that cache from what it sent where, in order (``sent``), corrected by what the engine
  reports in flight. vLLM 0.32 does not tell what is in its cache over HTTP (``list_loras`` is an
  engine-core call, reachable only through the dev-mode ``/collective_rpc``). With several gateways
  each sees its own share of the sends; ``adapter_share.SharedUse`` merges every gateway's sends per
  replica through Redis (``observe_shared``), so the model follows the engine's whole traffic. It
  stays a model, and the scorer treats it as a preference, never as a filter.

A value owned by the app's lifespan; no I/O, no clocks. Label values of the metrics it sets are
catalogued names or names an engine lists: bounded.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog
from ..metrics.gateway import GatewayMetrics


@dataclass
class ReplicaAdapters:
    """One replica's adapters as the gateway believes them to be."""

    registered: set[str] = field(default_factory=set)
    """Adapters the engine knows by name: it lists them, or the gateway loaded them there."""
    resident: OrderedDict[str, None] = field(default_factory=OrderedDict)
    """The engine's LRU slots as modelled: least recently used first, at most ``slots`` (when known)."""
    engine_slots: int | None = None
    """``max_lora`` as the engine reports it."""
    in_flight: Counter[str] = field(default_factory=Counter)
    """The gateway's open requests to this replica, per adapter."""
    listed: bool = False
    """The engine's ``/v1/models`` was read at least once: ``registered`` is what it lists."""

    def busy(self) -> int:
        """Distinct adapters with requests in flight: vLLM batches at most ``max_loras`` of them."""
        return sum(1 for n in self.in_flight.values() if n > 0)


DEMAND_HALF_LIFE = 200
"""Requests (to any adapter) after which an adapter's recent demand counts half."""
_DECAY = 0.5 ** (1 / DEMAND_HALF_LIFE)


class AdapterPlacement:
    def __init__(self, catalog: Catalog | None = None, metrics: GatewayMetrics | None = None) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self.replicas: dict[str, ReplicaAdapters] = {}
        self._tick = 0
        self._demand: dict[str, tuple[float, int]] = {}
        """Adapter -> (decayed request count, tick it was last updated): its recent share of requests."""
        self._parents: dict[str, str] = {}
        """Adapter -> base model, learned from engines' cards (adapters the catalog does not name)."""
        self.on_use: Callable[[str, str], None] | None = None
        """Told (replica URL, adapter) for every request sent and every load: the shared record's feed."""

    # -- what an adapter is -----------------------------------------------------------------------
    def base_of(self, model: str) -> str | None:
        """The base model of an adapter (a catalogued version or one an engine lists); None for a model."""
        if self._catalog is not None:
            base = self._catalog.base_of(model)
            if base is not None:
                return base
        return self._parents.get(model)

    def slots(self, url: str, base: str) -> int | None:
        """Adapters the replica holds at once: the engine's own figure, else the catalog's, else unknown."""
        replica = self.replicas.get(url)
        if replica is not None and replica.engine_slots is not None:
            return replica.engine_slots
        spec = self._catalog.lora.get(base) if self._catalog is not None else None
        return spec.max_loras if spec is not None else None

    def replica(self, url: str) -> ReplicaAdapters | None:
        return self.replicas.get(url)

    def demand(self, adapter: str) -> float:
        """Requests for ``adapter`` lately, decayed by half every ``DEMAND_HALF_LIFE`` adapter requests."""
        found = self._demand.get(adapter)
        if found is None:
            return 0.0
        value, at = found
        return float(value * _DECAY ** (self._tick - at))

    def registered(self, url: str, adapter: str) -> bool:
        replica = self.replicas.get(url)
        return replica is not None and adapter in replica.registered

    # -- what the engines tell --------------------------------------------------------------------
    def observe_cards(self, url: str, cards: Mapping[str, Mapping[str, Any]]) -> None:
        """The replica's ``/v1/models``: its registered adapters are the cards with a ``parent``."""
        adapters = {}
        for name, card in cards.items():
            parent = card.get("parent")
            if isinstance(parent, str) and parent and parent != name:
                adapters[name] = parent
        self._parents.update(adapters)
        replica = self.replicas.setdefault(url, ReplicaAdapters())
        before = set(replica.resident)
        fresh = [name for name in adapters if name not in replica.registered]
        replica.registered = set(adapters)
        replica.listed = True
        for name in [n for n in replica.resident if n not in replica.registered]:
            del replica.resident[name]  # unknown to the engine (it restarted): not resident either
        # Newly listed, not by the gateway's loads: --lora-modules, loaded at start while slots last.
        for name in fresh:
            slots = self.slots(url, adapters[name])
            if name not in replica.resident and (slots is None or len(replica.resident) < slots):
                replica.resident[name] = None
                replica.resident.move_to_end(name, last=False)  # unused since: first to go
        self._publish(before ^ set(replica.resident))

    def observe_lora_info(self, url: str, max_lora: int | None, in_flight: Iterable[str]) -> None:
        """``vllm:lora_requests_info``: the slot count, and adapters running or waiting (resident)."""
        replica = self.replicas.setdefault(url, ReplicaAdapters())
        if max_lora is not None and max_lora > 0:
            replica.engine_slots = max_lora
        touched = [a for a in in_flight if a]
        for adapter in touched:
            replica.registered.add(adapter)
        self._touch(url, replica, touched)

    def observe_shared(self, url: str, order: Sequence[str], since: Sequence[str] = ()) -> None:
        """Every gateway's sends to the replica (``adapter_share``): its adapters by last use, least recent
        first, as of the shared record's read; ``since``: this gateway's own sends after that read. The
        engine's LRU follows that order, so its last ``slots`` are resident (what the record holds that
        nobody sent lately comes before them). Once the engine's list was read, only adapters it lists
        count (a record older than an engine restart names ones it lost)."""
        replica = self.replicas.setdefault(url, ReplicaAdapters())
        before = set(replica.resident)
        shared = set(order)
        # What the record holds that no gateway sent lately (loaded at the engine's start, or sent
        # before the shared record's TTL) is older than every shared send: first to go.
        resident: OrderedDict[str, None] = OrderedDict.fromkeys(a for a in replica.resident if a not in shared)
        known = [a for a in order if not replica.listed or a in replica.registered]
        for adapter in (*known, *since, *(a for a in replica.in_flight if replica.in_flight[a] > 0)):
            resident[adapter] = None
            resident.move_to_end(adapter)
        base = next((b for a in resident if (b := self.base_of(a)) is not None), None)
        slots = self.slots(url, base) if base is not None else replica.engine_slots
        while slots is not None and len(resident) > slots:
            resident.popitem(last=False)
        replica.resident = resident
        self._publish(before ^ set(resident))

    def forget_model(self, name: str) -> None:
        """No replica has listed ``name`` for long (``Cluster``): its parent and demand go, and its
        ``inferstack_adapter_replicas`` series (no replica holds what none lists)."""
        base = self.base_of(name)
        self._parents.pop(name, None)
        self._demand.pop(name, None)
        if self._metrics is not None and base is not None:
            self._metrics.drop(self._metrics.adapter_replicas, base, name)

    def forget(self, url: str) -> None:
        """The replica left the cluster."""
        replica = self.replicas.pop(url, None)
        if replica is not None:
            self._publish(set(replica.resident))

    # -- what the gateway does --------------------------------------------------------------------
    def loaded(self, url: str, adapter: str) -> None:
        """The gateway loaded ``adapter`` on the replica (runtime load): registered and resident."""
        replica = self.replicas.setdefault(url, ReplicaAdapters())
        replica.registered.add(adapter)
        self._touch(url, replica, [adapter])
        if self.on_use is not None:
            self.on_use(url, adapter)

    def sent(self, url: str, adapter: str) -> bool:
        """A request for ``adapter`` goes to the replica. True when the model says it was not resident
        (the engine loads it from disk and evicts its least recently used adapter: a swap)."""
        replica = self.replicas.setdefault(url, ReplicaAdapters())
        swapped = adapter not in replica.resident
        self._demand[adapter] = (self.demand(adapter) + 1.0, self._tick)
        self._tick += 1
        replica.in_flight[adapter] += 1
        self._touch(url, replica, [adapter])
        if self.on_use is not None:
            self.on_use(url, adapter)
        return swapped

    def failed(self, url: str, adapter: str) -> None:
        """``sent`` was premature: loading it there failed, so it is neither resident nor in flight."""
        replica = self.replicas.get(url)
        if replica is not None and replica.resident.pop(adapter, 0) is None:
            self._publish({adapter})
        self.done(url, adapter)

    def done(self, url: str, adapter: str) -> None:
        replica = self.replicas.get(url)
        if replica is not None and replica.in_flight[adapter] > 0:
            replica.in_flight[adapter] -= 1
            if not replica.in_flight[adapter]:
                del replica.in_flight[adapter]

    # -- internals --------------------------------------------------------------------------------
    def _touch(self, url: str, replica: ReplicaAdapters, adapters: list[str]) -> None:
        changed: set[str] = set()
        for adapter in adapters:
            if adapter not in replica.resident:
                changed.add(adapter)
            replica.resident[adapter] = None
            replica.resident.move_to_end(adapter)
        base = next((b for a in adapters if (b := self.base_of(a)) is not None), None)
        slots = self.slots(url, base) if base is not None else replica.engine_slots
        if slots is not None:
            while len(replica.resident) > slots:
                evicted, _ = replica.resident.popitem(last=False)
                changed.add(evicted)
        self._publish(changed)

    def _publish(self, adapters: set[str]) -> None:
        """``inferstack_adapter_replicas``: replicas holding each changed adapter resident."""
        if self._metrics is None:
            return
        for adapter in adapters:
            base = self.base_of(adapter)
            if base is None:
                continue
            held = sum(1 for r in self.replicas.values() if adapter in r.resident)
            self._metrics.child(self._metrics.adapter_replicas, base, adapter).set(held)
