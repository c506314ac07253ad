"""The local fleet of ``make up``: the tiny model with LoRA adapters, a tiny embedding model, and the
gateway catalog that names them (the format ``make fleet`` writes to k8s/fleet/generated/catalog.json).

- ``tiny-llama`` (chat) with two adapter slots (``--max-loras 2 --max-lora-rank 8``); three adapters
  built from random weights (``inferstack_engine.tinylora``): ``sql-bot`` and ``support-tone`` are
  registered at start (``--lora-modules``), ``summarizer`` only in the catalog: the gateway loads it on
  the first request (``POST /v1/load_lora_adapter``, allowed by ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``).
  Three adapters and two slots: vLLM evicts the least recently used one when the third is asked for.
- ``tiny-embed``: the same weights served by a second vLLM as an embedding model (``--runner pooling``,
  no KV cache to speak of). Measured here: each engine holds about 1.25 GiB resident; both start in
  parallel. Opt-in (``EMBED=1 make up``): the load tests ask ``/v1/models`` for what to load and would
  send chat requests to an embedding model.

Adapters are named as the engines know their versions (``<adapter>@<version>``, as in the fleet);
clients send the adapter's name and the gateway resolves it. Stdlib only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from inferstack_engine.vllm import EngineOptions, MiB

BASE = "tiny-llama"
EMBED = "tiny-embed"
ALIASES = {"tiny": BASE}
MAX_LORAS = 2
MAX_RANK = 8
VERSION = "v1"
# (name, registered when the engine starts): the others are loaded by the gateway on first use.
ADAPTERS = (("sql-bot", True), ("support-tone", True), ("summarizer", False))
PRICES = {"prompt_per_1m": 0.0, "completion_per_1m": 0.0}


def served_name(adapter: str, version: str = VERSION) -> str:
    """As ``inferstack_fleet.catalog.served_name``: the name an engine knows one adapter version by."""
    return f"{adapter}@{version}"


@dataclass(frozen=True)
class LocalFleet:
    adapters_dir: Path  # <dir>/<adapter>@<version>/ holds adapter_config.json + adapter_model.safetensors
    embed: bool = False

    def adapter_dirs(self) -> dict[str, Path]:
        """Build (if missing) every adapter; served name -> directory."""
        from inferstack_engine import tinylora

        names = [served_name(a) for a, _ in ADAPTERS]
        return tinylora.ensure(self.adapters_dir, names)

    def lora_options(self, options: EngineOptions | None = None) -> tuple[EngineOptions, dict[str, str]]:
        """The chat engine's options and environment: LoRA on, the static adapters registered."""
        dirs = self.adapter_dirs()
        static = [f"{served_name(a)}={dirs[served_name(a)]}" for a, at_start in ADAPTERS if at_start]
        args = ("--enable-lora", f"--max-loras={MAX_LORAS}", f"--max-lora-rank={MAX_RANK}", "--lora-modules", *static)
        env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        options = options or EngineOptions()
        return replace(options, extra_args=(*options.extra_args, *args)), env

    @staticmethod
    def embed_options() -> EngineOptions:
        """An embedding engine needs little KV cache and few sequences."""
        return EngineOptions(kv_cache_bytes=64 * MiB, max_num_seqs=8, extra_args=("--runner=pooling",))

    def catalog(self) -> dict[str, Any]:
        """The gateway's catalog (``INFERSTACK_CATALOG_FILE``): adapter sources are local directories, which
        the gateway sends to the engine as ``lora_path`` when it loads one."""
        dirs = self.adapter_dirs()

        def model(task: str, aliases: list[str], lora: dict[str, Any] | None) -> dict[str, Any]:
            return {"task": task, "aliases": aliases, "priority": 50, "max_replicas": 1, "prices": PRICES, "lora": lora}

        lora = {"max_loras": MAX_LORAS, "max_rank": MAX_RANK, "adapters_uri": f"{self.adapters_dir}/"}
        models = {BASE: model("generate", [a for a, m in ALIASES.items() if m == BASE], lora)}
        if self.embed:
            models[EMBED] = model("embed", [], None)
        adapters = {
            name: {
                "base": BASE,
                "owner": "local",
                "rank": MAX_RANK,
                "versions": [
                    {"served_name": served_name(name), "source": f"{dirs[served_name(name)]}/", "weight_percent": 100}
                ],
            }
            for name, _ in ADAPTERS
        }
        return {"models": models, "aliases": dict(ALIASES), "adapters": adapters}

    def write_catalog(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.catalog(), indent=2, sort_keys=True) + "\n")
        return path


def summary(catalog: dict[str, Any]) -> list[str]:
    """The banner's lines naming the local fleet's models, aliases and adapters."""
    aliases = ", ".join(f"{alias} -> {model}" for alias, model in catalog["aliases"].items())
    adapters = ", ".join(f"{name} (on {spec['base']})" for name, spec in sorted(catalog["adapters"].items()))
    return [f"  models      {', '.join(sorted(catalog['models']))}; aliases: {aliases}", f"  adapters    {adapters}"]


def try_lines(catalog: dict[str, Any]) -> list[str]:
    """The banner's openai example for the local fleet (after ``client = OpenAI(...)``)."""
    lines = [
        "  print([(m.id, getattr(m, 'parent', None)) for m in client.models.list()])",
        f'  for name in ["{BASE}", "sql-bot", "summarizer"]:  # the base model, then two of its LoRA adapters',
        "      reply = client.chat.completions.create(model=name, max_tokens=16, temperature=0,",
        '          messages=[{"role": "user", "content": "Hello!"}])',
        "      print(name, reply.choices[0].message.content)",
    ]
    if EMBED in catalog["models"]:
        lines.append(f'  print(client.embeddings.create(model="{EMBED}", input="Hello!").data[0].embedding[:4])')
    return lines
