"""Fake `terraform`, `aws`, `kubectl` and `helm` for running k8s/bootstrap.sh and friends for real,
here, where no cluster or AWS account exists. Each shim appends its argv to one shared log (so the
order across tools is kept) and answers the few queries the scripts make from a small state
directory; `kubectl apply -k DIR` and `kubectl apply -f -` save what they were given, so the tests
can render and validate every manifest the scripts apply. No cluster is touched."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .manifests import REPO

SEP = "\x1f"

# terraform/envs/dev's values, with AWS's example account.
TF_OUTPUTS: dict[str, object] = {
    "cluster_name": "inferstack-dev",
    "region": "us-east-1",
    "karpenter_version": "1.14.1",
    "karpenter_interruption_queue_name": "inferstack-dev-karpenter",
    "models_bucket_name": "inferstack-dev-models-111122223333",
    "ecr_gateway_url": "111122223333.dkr.ecr.us-east-1.amazonaws.com/inferstack/gateway",
    "ecr_engine_url": "111122223333.dkr.ecr.us-east-1.amazonaws.com/inferstack/engine",
    "vpc_id": "vpc-0123456789abcdef0",
    "vpc_cidr": "10.10.0.0/16",
    "gpu_instance_types": ["g6.xlarge", "g5.xlarge", "g6.2xlarge", "g6e.12xlarge"],
    "acm_certificate_arn": None,
    "gateway_url": None,
    "redis_url": None,
    "lb_controller_role_arn": None,
}
LB_HOSTNAME = "k8s-inferstack-0123456789.us-east-1.elb.amazonaws.com"

# POSIX sh, not Python: a bootstrap run makes ~50 calls and a Python start-up each is seconds on a
# loaded machine. Every shim logs its argv as one line, fields separated by \037, in ONE write: the
# two sides of a pipe (`kubectl create ... | kubectl apply -f -`) run at once, and a line written in
# pieces interleaved with the other's (CI saw a call vanish from the log).
_LOG = """sep=$(printf '\\037'); line=$(basename "$0"); for a; do line="$line$sep$a"; done
printf '%s\\n' "$line" >> "$SHIM_LOG"
"""

_TERRAFORM = r"""
for last; do :; done
case " $* " in
  *" -json "*) [ -f "$SHIM_TF/$last.json" ] || exit 1; cat "$SHIM_TF/$last.json" ;;
  *) [ -f "$SHIM_TF/$last.raw" ] || { echo "Error: no raw value for output $last" >&2; exit 1; }
     cat "$SHIM_TF/$last.raw" ;;
esac
"""

_AWS = r"""
case "$1 $2" in
  "eks describe-addon") printf '%s\n' "$SHIM_VPC_CNI_CONFIG" ;;
  "eks describe-cluster") printf '%s\n' vpc-0fedcba9876543210 ;;
  "ec2 describe-vpcs") printf '%s\n' 10.10.0.0/16 ;;
  "s3 ls") [ "${SHIM_WEIGHTS:-0}" = 1 ] ;;
esac
"""

# kubectl: `apply` saves what it is given (rendering -k DIR with the real kubectl); `create secret`
# stores its arguments; `get secret` answers from them (jsonpath {.data.KEY} in base64); `get
# ingress` prints the load balancer's hostname; the rest (rollout status, port-forward) succeeds.
_KUBECTL = r"""
state="$SHIM_STATE"; ns=; k=; f=; o=; dry=; skip=; words=
args_file="$state/args-$$"; printf '%s\n' "$@" > "$args_file"
prev=
for a; do
  case "$prev" in -n) ns=$a ;; -k) k=$a ;; -f) f=$a ;; -o) o=$a ;; esac
  [ "$a" = --dry-run=client ] && dry=1
  prev=$a
  if [ -n "$skip" ]; then skip=; continue; fi
  case "$a" in -n|-k|-f|-o) skip=1 ;; -*) ;; *) words="$words $a" ;; esac
done
# shellcheck disable=SC2086
set -- $words
case "$1 $2" in
  "apply "*|"apply")
    out="$state/applied-$(printf %03d "$(find "$state" -name 'applied-*' | wc -l)").yaml"
    if [ -n "$k" ]; then "$SHIM_REAL_KUBECTL" kustomize "$k" > "$out" || exit 1
    elif [ "$f" = - ]; then cat > "$out"
    else cat "$f" > "$out"; fi ;;
  "create namespace")
    [ -n "$dry" ] && printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$3" ;;
  "create secret")
    if [ -n "$dry" ]; then
      printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\ntype: Opaque\n' "$4" "$ns"
    else cp "$args_file" "$state/secret-$ns-$4"; fi ;;
  "get secret")
    [ -f "$state/secret-$ns-$3" ] || exit 1
    if [ -n "$o" ]; then
      key=${o#*.data.}; key=${key%\}}
      sed -n "s/^--from-literal=$key=//p" "$state/secret-$ns-$3" | tr -d '\n' | base64
    fi ;;
  "get ingress") printf '%s' "$SHIM_LB_HOSTNAME" ;;
esac
exit 0
"""

_HELM = ""


@dataclass
class Shims:
    """A PATH with the four fake tools and what they recorded."""

    root: Path
    outputs: dict[str, object] = field(default_factory=lambda: dict(TF_OUTPUTS))

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.state = self.root / "state"
        self.log = self.root / "calls.log"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(exist_ok=True)
        for name, body in (("terraform", _TERRAFORM), ("aws", _AWS), ("kubectl", _KUBECTL), ("helm", _HELM)):
            (self.bin / name).write_text("#!/bin/sh\n" + _LOG + body)
            (self.bin / name).chmod(0o755)

    def env(self, mode: str, **extra: str) -> dict[str, str]:
        tf_outputs = self.root / f"outputs-{mode}"
        tf_outputs.mkdir(exist_ok=True)
        for name, value in ({**self.outputs, "compute_mode": mode} | self._roles(mode)).items():
            (tf_outputs / f"{name}.json").write_text(json.dumps(value, separators=(",", ":")))  # as terraform does
            if isinstance(value, str):
                (tf_outputs / f"{name}.raw").write_text(value)
        real_kubectl = shutil.which("kubectl") or str(REPO / ".venv-k8s" / "bin" / "kubectl")
        return {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "SHIM_LOG": str(self.log),
            "SHIM_STATE": str(self.state),
            "SHIM_TF": str(tf_outputs),
            "SHIM_REAL_KUBECTL": real_kubectl,
            "SHIM_LB_HOSTNAME": LB_HOSTNAME,
            "SHIM_VPC_CNI_CONFIG": '{"enableNetworkPolicy": "true"}',
            **extra,
        }

    def _roles(self, mode: str) -> dict[str, str]:
        node = "inferstack-dev-auto-node" if mode == "auto" else "inferstack-dev-karpenter-node"
        return {"karpenter_node_role_name": node}

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split(SEP) for line in self.log.read_text().splitlines()]

    def applied(self) -> list[Path]:
        return sorted(self.state.glob("applied-*.yaml"))
