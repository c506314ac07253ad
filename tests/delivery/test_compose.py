"""docker/compose.yaml, checked without a Docker daemon: Compose's own parser (`docker compose
config`), the files it mounts and builds from, the gateway's settings, and Prometheus' config
loaded with the project's real rule files by promtool."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._tools import COMPOSE, DOCKER, INSTALL_HINT, REPO, run, tool

COMPOSE_FILE = DOCKER / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as Compose resolves it (interpolation, defaults, long syntax)."""
    if not COMPOSE.exists():
        pytest.fail(f"docker compose binary missing: {INSTALL_HINT}")
    result = run([str(COMPOSE), "-f", str(COMPOSE_FILE), "config", "--format", "yaml"])
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)  # type: ignore[no-any-return]


def test_the_stack_has_its_five_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"engine", "gateway", "redis", "prometheus", "grafana"}


def test_builds_point_at_our_dockerfiles(compose: dict[str, Any]) -> None:
    for name, image in (("engine", "engine-cpu"), ("gateway", "gateway")):
        build = compose["services"][name]["build"]
        assert Path(build["context"]) == REPO
        assert (Path(build["context"]) / build["dockerfile"]) == DOCKER / image / "Dockerfile"


def test_every_bind_mount_exists(compose: dict[str, Any]) -> None:
    mounts = [v for svc in compose["services"].values() for v in svc.get("volumes", []) if v["type"] == "bind"]
    assert mounts
    for m in mounts:
        assert Path(m["source"]).exists(), f"{m['source']} (mounted at {m['target']}) does not exist"
        assert m.get("read_only"), f"{m['target']}: configuration is mounted read-only"


def test_prometheus_and_grafana_get_the_observability_folders(compose: dict[str, Any]) -> None:
    def sources(svc: str) -> dict[str, Path]:
        return {v["target"]: Path(v["source"]) for v in compose["services"][svc]["volumes"]}

    assert sources("prometheus")["/etc/prometheus/rules"] == REPO / "observability" / "rules"
    assert sources("grafana")["/var/lib/grafana/dashboards/inferstack"] == REPO / "observability" / "dashboards"
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/inferstack.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/inferstack"


def test_gateway_settings_are_documented_ones(compose: dict[str, Any]) -> None:
    """Every INFERSTACK_* the compose file sets is in docs/configuration.md: a typo would be ignored silently."""
    documented = set(re.findall(r"`(INFERSTACK_[A-Z0-9_]+)`", (REPO / "docs" / "configuration.md").read_text()))
    env = compose["services"]["gateway"]["environment"]
    assert set(env) <= documented, set(env) - documented
    assert env["INFERSTACK_UPSTREAMS"] == "http://engine:8000"
    assert env["INFERSTACK_REDIS_URL"].startswith("redis://redis:6379")
    assert compose["services"]["gateway"]["ports"][0]["target"] == 8080


def test_prometheus_config_loads_with_the_project_rules(tmp_path: Path) -> None:
    """promtool reads the compose Prometheus config with rule_files pointed at the real rules."""
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yaml"]
    rules = sorted((REPO / "observability" / "rules").glob("*.yaml"))
    assert rules, "observability/rules has no rule files"
    config["rule_files"] = [str(REPO / "observability" / "rules" / "*.yaml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = run([tool("promtool"), "check", "config", str(local)])
    assert result.returncode == 0, result.stdout + result.stderr
    for rule_file in rules:
        assert rule_file.name in result.stdout, f"promtool did not load {rule_file.name}"


def test_scrape_jobs_follow_the_observability_conventions() -> None:
    """The gateway job name matches the rules' GATEWAY_JOB regex, and every target has `namespace`."""
    from observability.conventions import GATEWAY_JOB

    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert any(re.fullmatch(GATEWAY_JOB, name) for name in jobs), f"no job matches {GATEWAY_JOB}"
    for job in jobs.values():
        for group in job["static_configs"]:
            assert group["labels"]["namespace"] == "inferstack"


def _exposed(image: str) -> set[int]:
    text = (DOCKER / image / "Dockerfile").read_text()
    return {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, flags=re.M) for p in line.split()}


def test_ports_are_the_images_contract_ports(compose: dict[str, Any]) -> None:
    """Gateway 8080 public + 8081 admin, engine 8000 + 5557 (KV events): the compose file, the images'
    EXPOSE and the Prometheus targets agree (the Kubernetes manifests use the same numbers)."""
    gateway, engine = compose["services"]["gateway"], compose["services"]["engine"]
    assert _exposed("gateway") == {8080, 8081} and _exposed("engine-cpu") == {8000, 5557}
    assert [p["target"] for p in gateway["ports"]] == [8080], "only the public port reaches the host"
    assert {int(p) for p in gateway["expose"]} == {8081}
    assert {int(p) for p in engine["expose"]} == _exposed("engine-cpu") and "ports" not in engine
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert targets == {"inferstack-gateway": ["gateway:8081"], "inferstack-engine": ["engine:8000"]}


def test_podman_compose_parses_it() -> None:
    result = run(
        [tool("podman-compose"), "-f", str(COMPOSE_FILE), "config"],
        env={**os.environ, "CONTAINERS_CONF": str(REPO / "tests" / "images" / "containers.conf")},
    )
    assert result.returncode == 0, result.stderr
    assert set(yaml.safe_load(result.stdout)["services"]) == {"engine", "gateway", "redis", "prometheus", "grafana"}
