"""The catalog: one YAML file per model (`models/<name>.yaml`) and per adapter
(`adapters/<base>/<name>.yaml`), read into strict pydantic models (unknown fields are errors).

Checks that need more than one field or file (GPU fit, ranks, unique names) are in `checks.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .hardware import DTYPE_BYTES, GPUS

# A model or adapter name is what clients put in `model`; it also becomes a label value and
# (dots turned into dashes) part of Kubernetes object names.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([a-z0-9.-]{0,50}[a-z0-9])?$")]
S3Uri = Annotated[str, StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")]


class CatalogError(Exception):
    """The catalog cannot be deployed; `problems` holds one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


T = TypeVar("T", bound=_Strict)


class Source(_Strict):
    """Weights at `<uri>/<revision>/`: a prefix per revision, so a deployed revision never changes."""

    uri: S3Uri
    revision: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]

    @property
    def weights_uri(self) -> str:
        return f"{self.uri.rstrip('/')}/{self.revision}/"


class Weights(_Strict):
    """What the memory fit needs: the parameter count and how each is stored."""

    params_b: float = Field(gt=0, description="Parameters, in billions.")
    dtype: Literal["float32", "bfloat16", "float16", "fp8", "int8", "int4"] = "bfloat16"
    # 2 x layers x kv_heads x head_dim x bytes per element; 0 for models without a KV cache.
    kv_bytes_per_token: int | None = Field(None, ge=0)

    @property
    def gib(self) -> float:
        return self.params_b * 1e9 * DTYPE_BYTES[self.dtype] / 2**30


class Hardware(_Strict):
    gpu: Literal["t4", "a10g", "l4", "l40s", "a100", "h100", "h200"]
    count: int = Field(1, ge=1, le=8)
    tensor_parallel: int | None = Field(None, ge=1)
    pipeline_parallel: int = Field(1, ge=1)

    @property
    def tp(self) -> int:
        return self.tensor_parallel if self.tensor_parallel is not None else self.count // self.pipeline_parallel

    @property
    def memory_gib(self) -> float:
        return GPUS[self.gpu].memory_gib


class Engine(_Strict):
    max_model_len: int = Field(8192, ge=16)
    gpu_memory_utilization: float = Field(0.90, gt=0, le=0.98)
    max_num_seqs: int = Field(64, ge=1)
    extra_args: list[str] = Field(default_factory=list)


class Targets(_Strict):
    queue_per_replica: int = Field(4, ge=1, description="Requests waiting in the engines, per replica.")
    demand_per_replica: int = Field(32, ge=1, description="Requests held or in flight at the gateway, per replica.")


class Scaling(_Strict):
    min: int = Field(0, ge=0)
    max: int = Field(1, ge=1)
    idle_seconds: int = Field(900, ge=0, description="Time after the last demand before scaling to zero.")
    targets: Targets = Field(default_factory=Targets)

    @model_validator(mode="after")
    def _ordered(self) -> Scaling:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class Prices(_Strict):
    """USD per million tokens, in the gateway's price-table fields."""

    prompt_per_1m: float = Field(ge=0)
    completion_per_1m: float = Field(0, ge=0)


class Lora(_Strict):
    max_loras: int = Field(4, ge=1, description="Adapters loaded at once per replica (vLLM --max-loras).")
    max_rank: int = Field(16, description="vLLM --max-lora-rank: adapters of a higher rank are refused.")
    max_cpu_loras: int | None = Field(
        None,
        ge=1,
        description="vLLM --max-cpu-loras: adapters kept in host memory, so one evicted from a GPU slot comes"
        " back without reading disk (vLLM's default: max_loras).",
    )
    adapters_uri: S3Uri


class Model(_Strict):
    name: Name
    task: Literal["generate", "embed"] = "generate"
    source: Source
    weights: Weights
    hardware: Hardware
    engine: Engine = Field(default_factory=Engine)
    scaling: Scaling = Field(default_factory=Scaling)
    priority: int = Field(50, ge=0, le=100, description="Higher is more important when GPUs are short.")
    aliases: list[Name] = Field(default_factory=list)
    prices: Prices
    lora: Lora | None = None

    @property
    def slug(self) -> str:
        """The name as it appears in Kubernetes object names (DNS labels have no dots)."""
        return self.name.replace(".", "-")


class Rollout(_Strict):
    """A second version taking `weight_percent` of the adapter's requests."""

    version: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{0,30}$")]
    source: S3Uri
    weight_percent: int = Field(ge=1, le=99)
    rank: int | None = Field(None, ge=1)


class Adapter(_Strict):
    name: Name
    source: S3Uri
    version: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{0,30}$")]
    owner: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rank: int = Field(ge=1, description="LoRA rank (r in adapter_config.json).")
    rollout: Rollout | None = None


class AdapterEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    base: str
    adapter: Adapter


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    models: list[Model]
    adapters: list[AdapterEntry]


def _read(path: Path, kind: type[T], root: Path) -> T:
    where = path.relative_to(root)
    try:
        document = yaml.safe_load(path.read_text())
        obj = kind.model_validate(document)
    except yaml.YAMLError as exc:
        raise CatalogError([f"{where}: not YAML: {exc}"]) from None
    except ValidationError as exc:
        problems = [f"{where}: {'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}" for e in exc.errors()]
        raise CatalogError(problems) from None
    name = getattr(obj, "name", None)
    if name != path.stem:
        raise CatalogError([f"{where}: name {name!r} differs from the file name {path.stem!r}"])
    return obj


def load(root: Path) -> Catalog:
    """Every file under `root/models` and `root/adapters`; all parse errors at once."""
    problems: list[str] = []
    models: list[Model] = []
    adapters: list[AdapterEntry] = []
    for path in sorted((root / "models").glob("*.yaml")):
        try:
            models.append(_read(path, Model, root))
        except CatalogError as exc:
            problems += exc.problems
    for path in sorted((root / "adapters").glob("*/*.yaml")):
        try:
            adapters.append(AdapterEntry(base=path.parent.name, adapter=_read(path, Adapter, root)))
        except CatalogError as exc:
            problems += exc.problems
    if problems:
        raise CatalogError(problems)
    if not models:
        raise CatalogError([f"{root}: no models/*.yaml"])
    return Catalog(models=models, adapters=adapters)


def served_name(adapter: str, version: str) -> str:
    """The name an engine knows one version of an adapter by; the gateway maps client names to it."""
    return f"{adapter}@{version}"
