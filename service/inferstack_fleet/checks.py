"""Checks across fields and files: what would fail only after a deploy (a pod that never fits its
GPUs, an adapter vLLM refuses, two things answering to one name) is refused here, with the reason."""

from __future__ import annotations

from collections import Counter

from .catalog import Catalog, CatalogError, Model, served_name
from .hardware import GPUS, LORA_RANKS, RUNTIME_OVERHEAD_GIB


def parallelism(model: Model) -> list[str]:
    hw = model.hardware
    problems = []
    if hw.tp * hw.pipeline_parallel != hw.count:
        problems.append(
            f"{model.name}: tensor_parallel {hw.tp} x pipeline_parallel {hw.pipeline_parallel}"
            f" must equal the GPU count {hw.count} (each GPU runs one shard)"
        )
    offered = GPUS[hw.gpu].counts
    if hw.count not in offered:
        problems.append(
            f"{model.name}: no instance has {hw.count} x {hw.gpu}; sizes offer {', '.join(map(str, offered))} GPUs"
        )
    return problems


def memory_fit(model: Model) -> list[str]:
    """Weights per GPU plus KV for one full-length sequence must fit what vLLM may use (rough)."""
    hw, engine = model.hardware, model.engine
    shards = max(hw.tp * hw.pipeline_parallel, 1)
    usable = hw.memory_gib * engine.gpu_memory_utilization
    weights = model.weights.gib / shards
    kv_per_token = model.weights.kv_bytes_per_token
    if kv_per_token is None:
        # Unknown shape: ask for at least a tenth of the usable memory for the KV cache.
        kv, kv_what = usable / 10, "a tenth of usable memory for KV"
    else:
        kv = engine.max_model_len * kv_per_token / shards / 2**30
        kv_what = f"KV for one {engine.max_model_len}-token sequence"
    needed = weights + kv + RUNTIME_OVERHEAD_GIB
    if needed <= usable:
        return []
    return [
        f"{model.name}: does not fit {hw.count} x {hw.gpu}: weights {weights:.1f} GiB per GPU + {kv_what}"
        f" {kv:.1f} GiB + runtime {RUNTIME_OVERHEAD_GIB} GiB = {needed:.1f} GiB, above the {usable:.1f} GiB usable"
        f" ({hw.memory_gib:g} GiB x gpu_memory_utilization {engine.gpu_memory_utilization});"
        " use more or larger GPUs, a smaller dtype or a shorter max_model_len"
    ]


def lora(catalog: Catalog) -> list[str]:
    models = {m.name: m for m in catalog.models}
    problems = []
    for m in catalog.models:
        if m.lora is not None and m.lora.max_rank not in LORA_RANKS:
            problems.append(
                f"{m.name}: lora.max_rank {m.lora.max_rank} is not one vLLM accepts ({', '.join(map(str, LORA_RANKS))})"
            )
        if m.lora is not None and m.lora.max_cpu_loras is not None and m.lora.max_cpu_loras < m.lora.max_loras:
            problems.append(
                f"{m.name}: lora.max_cpu_loras {m.lora.max_cpu_loras} is below lora.max_loras {m.lora.max_loras}"
                " (vLLM refuses to start)"
            )
    for entry in catalog.adapters:
        a, base = entry.adapter, models.get(entry.base)
        where = f"adapters/{entry.base}/{a.name}"
        if base is None:
            problems.append(f"{where}: no model named {entry.base!r} (the folder names the base model)")
            continue
        if base.lora is None:
            problems.append(f"{where}: model {base.name} has no `lora` section, so it serves no adapters")
            continue
        # The gateway points vLLM at the source's path below adapters_uri, mirrored on the engine's disk.
        sources = [("", a.source)] + ([(f" rollout {a.rollout.version}", a.rollout.source)] if a.rollout else [])
        for what, source in sources:
            if not source.startswith(base.lora.adapters_uri.rstrip("/") + "/"):
                problems.append(
                    f"{where}{what}: source {source} is not under {base.name}'s lora.adapters_uri"
                    f" {base.lora.adapters_uri} (only that prefix is copied to its engines)"
                )
        ranks = [("", a.rank)] + ([(f" rollout {a.rollout.version}", a.rollout.rank)] if a.rollout else [])
        for what, rank in ranks:
            if rank is not None and rank > base.lora.max_rank:
                problems.append(f"{where}{what}: rank {rank} is above {base.name}'s lora.max_rank {base.lora.max_rank}")
        if a.rollout is not None and a.rollout.version == a.version:
            problems.append(f"{where}: rollout version {a.version} is the current version")
    return problems


def unique_names(catalog: Catalog) -> list[str]:
    """Clients address models, aliases and adapters by one `model` field: each name means one thing."""
    owners: dict[str, list[str]] = {}
    for m in catalog.models:
        owners.setdefault(m.name, []).append(f"model {m.name}")
        for alias in m.aliases:
            owners.setdefault(alias, []).append(f"alias of {m.name}")
    for entry in catalog.adapters:
        owners.setdefault(entry.adapter.name, []).append(f"adapter on {entry.base}")
    problems = [f"name {n!r} is used {len(o)} times: {', '.join(o)}" for n, o in sorted(owners.items()) if len(o) > 1]
    slugs = Counter(m.slug for m in catalog.models)
    problems += [
        f"models {sorted(m.name for m in catalog.models if m.slug == s)} share the object name vllm-{s}"
        for s, n in sorted(slugs.items())
        if n > 1
    ]
    served = Counter(
        served_name(e.adapter.name, v)
        for e in catalog.adapters
        for v in [e.adapter.version] + ([e.adapter.rollout.version] if e.adapter.rollout else [])
    )
    problems += [f"adapter version {s!r} is declared twice" for s, n in sorted(served.items()) if n > 1]
    return problems


def check(catalog: Catalog) -> None:
    problems: list[str] = []
    for model in catalog.models:
        problems += parallelism(model) + memory_fit(model)
        if model.task == "embed" and model.lora is not None:
            problems.append(f"{model.name}: LoRA adapters are for generation models; remove `lora` from an embed model")
    problems += lora(catalog) + unique_names(catalog)
    if problems:
        raise CatalogError(problems)


def node_families(model: Model, allowed: dict[str, set[str]]) -> list[str]:
    """The GPU NodePools must be able to launch an instance with the model's GPU: `allowed` maps each
    NodePool file to the instance families its requirements allow."""
    wanted = set(GPUS[model.hardware.gpu].families)
    return [
        f"{model.name}: needs {model.hardware.gpu} ({', '.join(sorted(wanted))}), but {where} allows only"
        f" {', '.join(sorted(families))}: add a family to its instance-family requirement"
        for where, families in sorted(allowed.items())
        if not wanted & families
    ]
