"""k8s/bootstrap.sh and k8s/grafana.sh, run for real against fake `terraform`, `aws`, `kubectl` and
`helm` (k8s/tests/shims.py) that record their calls. NO CLUSTER AND NO AWS ACCOUNT IS TOUCHED: these
tests prove the order, the pins, idempotency, the secrets and that every manifest applied renders
and validates; a real EKS run is still to be done (k8s/README.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .manifests import K8S, OVERLAY_OF_MODE, PLATFORMS, REPO, Obj, find
from .shims import LB_HOSTNAME, Shims
from .test_schemas import validation_errors

NOTICE = "k8s/tests: fake terraform/aws/kubectl/helm on PATH; no cluster and no AWS account was touched"
CLI = REPO / ".venv" / "bin" / "inferstack"


def _copy_k8s(root: Path) -> Path:
    """bootstrap.sh writes the cluster values into the tree it runs from: give it a copy."""
    tree = root / "repo"
    shutil.copytree(K8S, tree / "k8s", ignore=shutil.ignore_patterns("tests", "__pycache__"))
    return tree


def _run(tree: Path, shims: Shims, mode: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    print(NOTICE)
    return subprocess.run(
        ["bash", str(tree / "k8s" / "bootstrap.sh"), *args],
        env=shims.env(mode, KEYS_CLI=str(CLI), TF_DIR="/nonexistent/terraform/envs/dev", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _installs(calls: list[list[str]]) -> dict[str, list[str]]:
    return {c[3]: c for c in calls if c[:3] == ["helm", "upgrade", "--install"]}


def _order(calls: list[list[str]]) -> list[str]:
    """What happened, in order: helm releases and kubectl apply targets."""
    steps = []
    for c in calls:
        if c[:3] == ["helm", "upgrade", "--install"]:
            steps.append(c[3])
        elif c[:2] == ["kubectl", "apply"]:
            target = c[c.index("-k") + 1] if "-k" in c else c[c.index("-f") + 1]
            steps.append(target.split("/k8s/")[-1] if "/k8s/" in target else target)
    return steps


@pytest.fixture(scope="module", params=["auto", "karpenter"])
def bootstrapped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two runs of bootstrap.sh on one fake cluster: the first from nothing, the second on top."""
    mode = str(request.param)
    root = tmp_path_factory.mktemp(f"bootstrap-{mode}")
    tree, shims = _copy_k8s(root), Shims(root / "shims")
    first = _run(tree, shims, mode, "dev")
    assert first.returncode == 0, first.stdout + first.stderr
    first_calls, first_applied = shims.calls(), shims.applied()
    second = _run(tree, shims, mode, "dev")
    assert second.returncode == 0, second.stdout + second.stderr
    return {
        "mode": mode,
        "tree": tree,
        "shims": shims,
        "first": first,
        "second": second,
        "first_calls": first_calls,
        "second_calls": shims.calls()[len(first_calls) :],
        "first_applied": first_applied,
    }


def test_order_is_what_each_step_needs(bootstrapped: dict[str, object]) -> None:
    mode, calls = bootstrapped["mode"], bootstrapped["first_calls"]
    assert isinstance(calls, list)
    assert calls[0][:2] == ["terraform", "-chdir=/nonexistent/terraform/envs/dev"]
    kubeconfig = next(i for i, c in enumerate(calls) if c[:3] == ["aws", "eks", "update-kubeconfig"])
    first_kubectl = next(i for i, c in enumerate(calls) if c[0] in ("kubectl", "helm"))
    assert kubeconfig < first_kubectl, "kubeconfig before anything talks to the cluster"
    order = _order(calls)
    karpenter = ["karpenter-crd", "karpenter"] if mode == "karpenter" else []
    lb = ["aws-load-balancer-controller"] if mode == "karpenter" else []
    device_plugin = ["nvidia-device-plugin"] if mode == "karpenter" else []
    assert order[: len(karpenter) + 2] == [*karpenter, f"platform/{PLATFORMS[str(mode)]}", "metrics-server"]
    # Pods that need a node (CPU NodePool) and a volume (StorageClass) come after the platform;
    # the overlay needs KEDA's and Prometheus' CRDs, so it comes last.
    rest = [s for s in order if s in {*lb, "kube-prometheus-stack", "keda", *device_plugin, "dcgm-exporter"}]
    assert rest == [*lb, "kube-prometheus-stack", "keda", *device_plugin, "dcgm-exporter"]
    assert order[-1] == f"overlays/{OVERLAY_OF_MODE[str(mode)]}"
    grafana_secret = next(
        i for i, c in enumerate(calls) if c[:5] == ["kubectl", "-n", "monitoring", "create", "secret"]
    )
    prometheus_stack = next(
        i for i, c in enumerate(calls) if c[:4] == ["helm", "upgrade", "--install", "kube-prometheus-stack"]
    )
    assert grafana_secret < prometheus_stack, "Grafana's admin secret must exist before the chart reads it"


def test_every_chart_is_pinned_and_karpenter_follows_terraform(bootstrapped: dict[str, object]) -> None:
    installs = _installs(bootstrapped["first_calls"])  # type: ignore[arg-type]
    expected = {"metrics-server", "kube-prometheus-stack", "keda", "dcgm-exporter"}
    if bootstrapped["mode"] == "karpenter":
        expected |= {"karpenter-crd", "karpenter", "aws-load-balancer-controller", "nvidia-device-plugin"}
    assert set(installs) == expected
    for release, args in installs.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", args[args.index("--version") + 1]), release
        for i, a in enumerate(args):
            if a == "--values":
                assert isinstance(yaml.safe_load(Path(args[i + 1]).read_text()), dict), release
        assert not any("adminPassword" in a or "prom-operator" in a for a in args), release
    if bootstrapped["mode"] == "karpenter":
        # One version everywhere: Terraform's (its IAM policy is written for it); CRDs from their chart.
        for chart in ("karpenter-crd", "karpenter"):
            assert installs[chart][installs[chart].index("--version") + 1] == "1.14.1"
        assert "--skip-crds" in installs["karpenter"]
        assert installs["karpenter-crd"][4] == "oci://public.ecr.aws/karpenter/karpenter-crd"
        karpenter = installs["karpenter"]
        assert "settings.clusterName=inferstack-dev" in karpenter
        assert "settings.interruptionQueue=inferstack-dev-karpenter" in karpenter
        lb = installs["aws-load-balancer-controller"]
        assert {"clusterName=inferstack-dev", "region=us-east-1", "vpcId=vpc-0123456789abcdef0"} <= set(lb)


def test_metrics_server_is_installed_in_both_modes(bootstrapped: dict[str, object]) -> None:
    """Defect 9: without metrics-server the gateway's HPA never acts."""
    args = _installs(bootstrapped["first_calls"])["metrics-server"]  # type: ignore[arg-type]
    assert args[4] == "metrics-server/metrics-server" and args[args.index("--namespace") + 1] == "kube-system"


def test_every_applied_manifest_renders_and_validates(bootstrapped: dict[str, object]) -> None:
    applied = bootstrapped["first_applied"]
    assert isinstance(applied, list) and applied
    objs: list[Obj] = [d for p in applied for d in yaml.safe_load_all(p.read_text()) if d]
    assert not validation_errors(objs)
    kinds = {o["kind"] for o in objs}
    assert {"StorageClass", "Namespace", "Deployment", "Ingress", "StatefulSet"} <= kinds
    assert ("NodePool" in kinds) and find(objs, "NodePool", "gpu")
    if bootstrapped["mode"] == "karpenter":
        assert find(objs, "NodePool", "cpu") and find(objs, "EC2NodeClass", "cpu")


def test_second_run_changes_nothing_it_made_once(bootstrapped: dict[str, object]) -> None:
    """Idempotent: the same releases and applies again; generated secrets are not made twice."""
    first, second = bootstrapped["first_calls"], bootstrapped["second_calls"]
    assert isinstance(first, list) and isinstance(second, list)
    creates = [c for c in second if "create" in c and "secret" in c and "--dry-run=client" not in c]
    assert not creates, "a second run must keep the Grafana password and the API keys"
    assert _order(second) == _order(first)
    assert all(c[:3] == ["helm", "upgrade", "--install"] for c in second if c[0] == "helm" and c[1] not in ("repo",))
    out = bootstrapped["second"].stdout  # type: ignore[attr-defined]
    assert "first API key" not in out


def test_grafana_password_is_generated_never_the_default(bootstrapped: dict[str, object]) -> None:
    first = bootstrapped["first_calls"]
    assert isinstance(first, list)
    (create,) = [c for c in first if c[:6] == ["kubectl", "-n", "monitoring", "create", "secret", "generic"]]
    password = next(a for a in create if a.startswith("--from-literal=admin-password=")).split("=", 2)[2]
    assert len(password) >= 24 and password != "prom-operator"
    values = yaml.safe_load((K8S / "addons" / "values" / "kube-prometheus-stack.yaml").read_text())
    assert values["grafana"]["admin"]["existingSecret"] == create[6]
    assert "adminPassword" not in values["grafana"]


def test_first_api_key_is_made_stored_as_its_hash_and_printed_once(bootstrapped: dict[str, object]) -> None:
    shims = bootstrapped["shims"]
    assert isinstance(shims, Shims)
    (stored,) = shims.state.glob("secret-inferstack-inferstack-keys")
    assert "--from-file=keys.yaml=" in stored.read_text()
    out = bootstrapped["first"].stdout  # type: ignore[attr-defined]
    (key,) = re.findall(r"first API key \(shown once, store it now\): (\S+)", out)
    assert key.startswith("isk-")


def test_endpoint_url_is_printed(bootstrapped: dict[str, object]) -> None:
    out = bootstrapped["first"].stdout  # type: ignore[attr-defined]
    assert f"inferstack is up: http://{LB_HOSTNAME}" in out
    assert "k8s/grafana.sh" in out


def test_alertmanager_has_a_receiver(bootstrapped: dict[str, object]) -> None:
    """Defect 13: alerts go to a named receiver; with ALERT_WEBHOOK_URL, to that URL (from a Secret)."""
    values = yaml.safe_load((K8S / "addons" / "values" / "kube-prometheus-stack.yaml").read_text())
    config = values["alertmanager"]["config"]
    assert config["route"]["receiver"] in {r["name"] for r in config["receivers"]}
    webhook = yaml.safe_load((K8S / "addons" / "values" / "alertmanager-webhook.yaml").read_text())["alertmanager"]
    (receiver,) = [r for r in webhook["config"]["receivers"] if r["name"] == webhook["config"]["route"]["receiver"]]
    secret = webhook["alertmanagerSpec"]["secrets"][0]
    assert receiver["webhook_configs"][0]["url_file"] == f"/etc/alertmanager/secrets/{secret}/url"


def test_karpenter_mode_refuses_a_cluster_without_network_policy_enforcement(tmp_path: Path) -> None:
    """Defect 10 (Karpenter mode): the vpc-cni add-on must run its policy agent (Terraform sets it)."""
    tree, shims = _copy_k8s(tmp_path), Shims(tmp_path / "shims")
    proc = _run(tree, shims, "karpenter", "dev", SHIM_VPC_CNI_CONFIG="None")
    assert proc.returncode == 1 and "enableNetworkPolicy" in proc.stderr
    assert "kube-prometheus-stack" not in _installs(shims.calls())


def test_options_tls_private_endpoint_and_alert_webhook(tmp_path: Path) -> None:
    tree, shims = _copy_k8s(tmp_path), Shims(tmp_path / "shims")
    arn = "arn:aws:acm:us-east-1:111122223333:certificate/0f0f0f0f-0000-4000-8000-000000000000"
    shims.outputs["acm_certificate_arn"] = arn
    hook = "https://hooks.example.com/alerts"
    proc = _run(tree, shims, "karpenter", "dev", INGRESS_SCHEME="internal", ALERT_WEBHOOK_URL=hook)
    assert proc.returncode == 0, proc.stderr
    stack = _installs(shims.calls())["kube-prometheus-stack"]
    assert any(a.endswith("values/alertmanager-webhook.yaml") for a in stack)
    assert not any(hook in a for c in shims.calls() if c[0] == "helm" for a in c), "the URL only in a Secret"
    assert f"inferstack is up: https://{LB_HOSTNAME}" in proc.stdout
    objs = [d for p in shims.applied() for d in yaml.safe_load_all(p.read_text()) if d]
    assert not validation_errors(objs)
    (params,) = find(objs, "IngressClassParams")
    assert params["spec"]["certificateArn"] == [arn] and params["spec"]["scheme"] == "internal"
    (ingress,) = find(objs, "Ingress")
    notes = ingress["metadata"]["annotations"]
    assert '{"HTTPS": 443}' in notes["alb.ingress.kubernetes.io/listen-ports"]
    assert notes["alb.ingress.kubernetes.io/ssl-redirect"] == "443"


def test_unknown_environment_name_is_refused() -> None:
    proc = subprocess.run(
        ["bash", str(K8S / "bootstrap.sh"), "../prod"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 64


def test_grafana_command_prints_the_generated_login_and_forwards(bootstrapped: dict[str, object]) -> None:
    shims, tree = bootstrapped["shims"], bootstrapped["tree"]
    assert isinstance(shims, Shims) and isinstance(tree, Path)
    before = len(shims.calls())
    proc = subprocess.run(
        ["bash", str(tree / "k8s" / "grafana.sh")],
        env=shims.env(str(bootstrapped["mode"]), GRAFANA_PORT="3999"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (create,) = [c for c in shims.calls() if c[:6] == ["kubectl", "-n", "monitoring", "create", "secret", "generic"]]
    password = next(a for a in create if a.startswith("--from-literal=admin-password=")).split("=", 2)[2]
    assert f"user admin  password {password}" in proc.stdout
    (forward,) = [c for c in shims.calls()[before:] if "port-forward" in c]
    assert forward[-2:] == ["svc/kube-prometheus-stack-grafana", "3999:80"]


def test_scripts_pass_shellcheck() -> None:
    scripts = [str(p) for p in K8S.rglob("*.sh")]
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "shellcheck"), "-x", "--severity=style", *scripts],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def test_keda_queries_the_prometheus_the_bootstrap_installs(
    bootstrapped: dict[str, object], rendered: dict[str, list[Obj]]
) -> None:
    prom = _installs(bootstrapped["first_calls"])["kube-prometheus-stack"]  # type: ignore[arg-type]
    release, namespace = prom[3], prom[prom.index("--namespace") + 1]
    for overlay in ("aws-gpu", "aws-gpu-karpenter"):
        # One ScaledObject per fleet model: every one asks this Prometheus.
        scaled = find(rendered[overlay], "ScaledObject")
        assert scaled, overlay
        for trigger in (t for so in scaled for t in so["spec"]["triggers"]):
            assert trigger["metadata"]["serverAddress"] == f"http://{release}-prometheus.{namespace}.svc:9090"
        maps = [c for c in find(rendered[overlay], "ConfigMap") if c["metadata"]["name"].startswith("dashboard-")]
        assert {m["metadata"]["namespace"] for m in maps} == {namespace}, "where this Grafana's sidecar looks"
    keda = yaml.safe_load((K8S / "addons" / "values" / "keda.yaml").read_text())
    # Defect 15: KEDA's own metrics (keda_scaler_metrics_value) feed the capacity dashboard.
    assert keda["prometheus"]["operator"]["enabled"] and keda["prometheus"]["operator"]["serviceMonitor"]["enabled"]


def test_gpu_daemonsets_target_our_gpu_nodes(rendered: dict[str, list[Obj]]) -> None:
    for name in ("nvidia-device-plugin", "dcgm-exporter"):
        values = yaml.safe_load((K8S / "addons" / "values" / f"{name}.yaml").read_text())
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
        for overlay in ("aws-gpu", "aws-gpu-karpenter"):
            (pool,) = find(rendered[overlay], "NodePool")
            labels = pool["spec"]["template"]["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in values["nodeSelector"].items()), (name, overlay)


def test_pipeline_runs_it_for_the_cluster_only(tmp_path: Path) -> None:
    """SKIP_APP=1 (the deploy workflow, whose release step applies the overlay with digests): no API
    key is made (it would land in CI logs), no overlay applied. The argument may be the Terraform dir."""
    tree, shims = _copy_k8s(tmp_path), Shims(tmp_path / "shims")
    (tmp_path / "envs" / "dev").mkdir(parents=True)
    proc = _run(tree, shims, "auto", str(tmp_path / "envs" / "dev"), SKIP_APP="1")
    assert proc.returncode == 0, proc.stderr
    assert "cluster ready" in proc.stdout
    order = _order(shims.calls())
    assert "kube-prometheus-stack" in order and not [s for s in order if s.startswith("overlays/")]
    assert not list(shims.state.glob("secret-inferstack-*"))


def test_vpc_comes_from_the_cluster_when_terraform_does_not_say(tmp_path: Path) -> None:
    """An older Terraform state without vpc_id / vpc_cidr: both are asked of EKS and EC2 instead."""
    tree, shims = _copy_k8s(tmp_path), Shims(tmp_path / "shims")
    del shims.outputs["vpc_id"], shims.outputs["vpc_cidr"]
    proc = _run(tree, shims, "karpenter", "dev")
    assert proc.returncode == 0, proc.stderr
    assert any(c[:3] == ["aws", "eks", "describe-cluster"] for c in shims.calls())
    assert "vpcId=vpc-0fedcba9876543210" in _installs(shims.calls())["aws-load-balancer-controller"]
    objs = [d for p in shims.applied() for d in yaml.safe_load_all(p.read_text()) if d]
    (policy,) = [o for o in find(objs, "NetworkPolicy") if o["metadata"]["name"] == "inferstack-gateway"]
    assert {"ipBlock": {"cidr": "10.10.0.0/16"}} in [p for r in policy["spec"]["ingress"] for p in r["from"]]
