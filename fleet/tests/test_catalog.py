"""The catalog refuses what cannot work, before anything deploys: one test per refusal, each on a
copy of the committed example catalog with one thing wrong."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferstack_fleet import checks
from inferstack_fleet.__main__ import main
from inferstack_fleet.catalog import CatalogError, load

EXAMPLE = Path(__file__).resolve().parents[1]
QWEN = "models/qwen2.5-7b-instruct.yaml"
LLAMA = "models/llama-3.3-70b-instruct.yaml"
BGE = "models/bge-m3.yaml"
SQL_BOT = "adapters/qwen2.5-7b-instruct/sql-bot.yaml"


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    for sub in ("models", "adapters"):
        shutil.copytree(EXAMPLE / sub, tmp_path / sub)
    return tmp_path


def edit(root: Path, rel: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / rel
    document = yaml.safe_load(path.read_text())
    change(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))


def problems(root: Path) -> list[str]:
    with pytest.raises(CatalogError) as info:
        checks.check(load(root))
    return info.value.problems


def test_the_example_catalog_is_valid() -> None:
    catalog = load(EXAMPLE)
    checks.check(catalog)
    assert {m.name for m in catalog.models} == {"qwen2.5-7b-instruct", "llama-3.3-70b-instruct", "bge-m3"}
    llama = next(m for m in catalog.models if m.name == "llama-3.3-70b-instruct")
    assert (llama.hardware.gpu, llama.hardware.count, llama.hardware.tp) == ("l40s", 4, 4)


def test_tensor_parallel_must_use_every_gpu(catalog_dir: Path) -> None:
    edit(catalog_dir, LLAMA, lambda d: d["hardware"].update(tensor_parallel=2))
    parallel, fit = problems(catalog_dir)
    assert parallel == (
        "llama-3.3-70b-instruct: tensor_parallel 2 x pipeline_parallel 1 must equal the GPU count 4"
        " (each GPU runs one shard)"
    )
    # Two shards of a 70B model do not fit two L40S either: both are said.
    assert fit.startswith("llama-3.3-70b-instruct: does not fit 4 x l40s: weights 65.8 GiB per GPU")


def test_a_gpu_count_no_instance_has(catalog_dir: Path) -> None:
    edit(catalog_dir, LLAMA, lambda d: d["hardware"].update(gpu="h100", count=4))
    assert problems(catalog_dir) == ["llama-3.3-70b-instruct: no instance has 4 x h100; sizes offer 8 GPUs"]


def test_weights_that_do_not_fit_the_gpus(catalog_dir: Path) -> None:
    edit(catalog_dir, LLAMA, lambda d: d["hardware"].update(gpu="l4"))
    (problem,) = problems(catalog_dir)
    assert problem.startswith("llama-3.3-70b-instruct: does not fit 4 x l4: weights 32.9 GiB per GPU")
    assert "above the 22.1 GiB usable (24 GiB x gpu_memory_utilization 0.92)" in problem


def test_kv_for_one_full_sequence_must_fit_too(catalog_dir: Path) -> None:
    # The weights alone fit one L4; a 1M-token context's KV cache does not.
    edit(catalog_dir, QWEN, lambda d: d["engine"].update(max_model_len=1_000_000))
    (problem,) = problems(catalog_dir)
    assert "KV for one 1000000-token sequence 53.4 GiB" in problem


def test_lora_rank_vllm_does_not_accept(catalog_dir: Path) -> None:
    edit(catalog_dir, QWEN, lambda d: d["lora"].update(max_rank=24))
    assert problems(catalog_dir)[0] == (
        "qwen2.5-7b-instruct: lora.max_rank 24 is not one vLLM accepts (1, 8, 16, 32, 64, 128, 256, 320, 512)"
    )


def test_adapter_rank_above_its_base_models_maximum(catalog_dir: Path) -> None:
    edit(catalog_dir, SQL_BOT, lambda d: d["rollout"].update(rank=64))
    assert problems(catalog_dir) == [
        "adapters/qwen2.5-7b-instruct/sql-bot rollout v4: rank 64 is above qwen2.5-7b-instruct's lora.max_rank 16"
    ]


def test_a_host_cache_smaller_than_the_slots(catalog_dir: Path) -> None:
    edit(catalog_dir, QWEN, lambda d: d["lora"].update(max_cpu_loras=2))
    assert problems(catalog_dir) == [
        "qwen2.5-7b-instruct: lora.max_cpu_loras 2 is below lora.max_loras 4 (vLLM refuses to start)"
    ]


def test_adapter_stored_outside_its_base_models_adapters_uri(catalog_dir: Path) -> None:
    edit(catalog_dir, SQL_BOT, lambda d: d["rollout"].update(source="s3://elsewhere/sql-bot/v4/"))
    assert problems(catalog_dir) == [
        "adapters/qwen2.5-7b-instruct/sql-bot rollout v4: source s3://elsewhere/sql-bot/v4/ is not under"
        " qwen2.5-7b-instruct's lora.adapters_uri s3://inferstack-dev-models-111122223333/adapters/qwen2.5-7b-instruct/"
        " (only that prefix is copied to its engines)"
    ]


def test_adapter_for_a_model_that_is_not_there(catalog_dir: Path) -> None:
    shutil.move(catalog_dir / "adapters" / "qwen2.5-7b-instruct", catalog_dir / "adapters" / "qwen3")
    assert problems(catalog_dir) == [
        "adapters/qwen3/sql-bot: no model named 'qwen3' (the folder names the base model)",
        "adapters/qwen3/support-tone: no model named 'qwen3' (the folder names the base model)",
    ]


def test_adapter_on_a_model_without_lora(catalog_dir: Path) -> None:
    adapter = yaml.safe_load((EXAMPLE / SQL_BOT).read_text())
    adapter.pop("rollout")
    (catalog_dir / "adapters" / "bge-m3").mkdir()
    (catalog_dir / "adapters" / "bge-m3" / "short.yaml").write_text(yaml.safe_dump({**adapter, "name": "short"}))
    assert problems(catalog_dir) == [
        "adapters/bge-m3/short: model bge-m3 has no `lora` section, so it serves no adapters"
    ]


def test_one_name_one_meaning(catalog_dir: Path) -> None:
    edit(catalog_dir, BGE, lambda d: d.update(aliases=["embeddings", "sql-bot", "chat"]))
    assert problems(catalog_dir) == [
        "name 'chat' is used 2 times: alias of bge-m3, alias of qwen2.5-7b-instruct",
        "name 'sql-bot' is used 2 times: alias of bge-m3, adapter on qwen2.5-7b-instruct",
    ]


def test_unknown_fields_and_wrong_types_are_refused_per_file(catalog_dir: Path) -> None:
    edit(catalog_dir, QWEN, lambda d: d["engine"].update(max_model_length=4096))
    edit(catalog_dir, BGE, lambda d: d["hardware"].update(gpu="b300", count="1"))
    with pytest.raises(CatalogError) as info:
        load(catalog_dir)
    text = "\n".join(info.value.problems)
    assert "models/qwen2.5-7b-instruct.yaml: engine.max_model_length: Extra inputs are not permitted" in text
    assert "models/bge-m3.yaml: hardware.gpu: Input should be 't4', 'a10g', 'l4', 'l40s'" in text
    assert "models/bge-m3.yaml: hardware.count: Input should be a valid integer" in text


def test_the_file_name_is_the_name(catalog_dir: Path) -> None:
    edit(catalog_dir, BGE, lambda d: d.update(name="bge-m4"))
    with pytest.raises(CatalogError, match=r"models/bge-m3.yaml: name 'bge-m4' differs from the file name 'bge-m3'"):
        load(catalog_dir)


def test_scaling_minimum_above_maximum(catalog_dir: Path) -> None:
    edit(catalog_dir, BGE, lambda d: d["scaling"].update(min=3))
    with pytest.raises(CatalogError, match=r"models/bge-m3.yaml: scaling: Value error, min \(3\) is above max \(2\)"):
        load(catalog_dir)


def test_the_command_lists_every_problem_and_writes_nothing(
    catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(catalog_dir, LLAMA, lambda d: d["hardware"].update(tensor_parallel=2))
    edit(catalog_dir, QWEN, lambda d: d["lora"].update(max_rank=24))
    out = tmp_path / "generated"
    assert main(["generate", "--catalog", str(catalog_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "3 problem(s), nothing generated" in err
    assert "tensor_parallel 2" in err and "lora.max_rank 24" in err
    assert not out.exists()


def test_the_readme_example_model_is_valid(catalog_dir: Path) -> None:
    """fleet/README.md shows a model file; it must be one the catalog accepts."""
    example = re.search(r"```yaml\n(name: mistral-small\n.*?)```", (EXAMPLE / "README.md").read_text(), re.S)
    assert example
    (catalog_dir / "models" / "mistral-small.yaml").write_text(example[1])
    checks.check(load(catalog_dir))


def test_a_gpu_the_nodepools_cannot_launch(
    catalog_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(catalog_dir, LLAMA, lambda d: d["hardware"].update(gpu="h100", count=8))
    assert main(["generate", "--catalog", str(catalog_dir), "--out", str(tmp_path / "generated")]) == 1
    err = capsys.readouterr().err
    # The GPU NodePools allow g5, g6 and g6e (k8s/components/gpu-nodes-*/nodepool.yaml).
    assert (
        "llama-3.3-70b-instruct: needs h100 (p5), but k8s/components/gpu-nodes-karpenter/nodepool.yaml allows only"
        " g5, g6, g6e: add a family to its instance-family requirement"
    ) in err
    assert "k8s/components/gpu-nodes-auto-mode/nodepool.yaml allows only" in err
