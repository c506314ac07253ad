"""The deploy rehearsed for real: `terraform apply`, a second `plan -detailed-exitcode` (no changes)
and `destroy` of every stack the AWS emulator supports, against moto's server on a free loopback port.

Three stacks run side by side in one moto (the S3 lifecycle configurations each wait about 55 s):
  bootstrap    terraform/bootstrap as is (state bucket), local state
  shared       terraform/shared as is (one ECR registry with the third-party mirrors, the GitHub OIDC
               provider, the push role)
  environment  a root composing modules/network, modules/models, modules/karpenter, modules/edge and
               modules/ci (the environment's plan / apply roles) as modules/platform does, minus EKS
What moto cannot do is switched off by override files (`count = 0`) and stays plan-only under
`terraform test` (tests/*.tftest.hcl, envs/*/tests): EKS cluster, node group, access entries,
add-ons, Pod Identity associations and the bucket policies (moto ignores policy conditions, so a
TLS-only Deny denies every call). The test prints exactly what was applied and what only planned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inferstack_devstack.moto import moto_server

TF_DIR = Path(__file__).resolve().parents[1]
TF_SH = TF_DIR / "scripts" / "tf.sh"
COMMAND_TIMEOUT = 420
ACCOUNT = "123456789012"  # moto's account

# Resources moto does not support (or cannot evaluate), by module folder: switched off for the run.
PLAN_ONLY = {
    "modules/private-bucket": ["aws_s3_bucket_policy.this"],  # the state and the weights bucket
    "modules/models": ["aws_eks_pod_identity_association.engine", "aws_eks_pod_identity_association.gateway"],
    "modules/karpenter": ["aws_eks_pod_identity_association.controller", "aws_eks_access_entry.node"],
}
PLAN_ONLY_MODULES = [
    "modules/eks (cluster, node group, access entries, add-ons, Pod Identity): modules/platform/tests, envs/*/tests,"
    " modules/eks/tests",
    "modules/cache (ElastiCache for Valkey, optional): modules/cache/tests, modules/platform/tests, envs/dev/tests",
    "modules/edge DNS validation in Route 53 (needs a real zone): modules/edge/tests",
]

ENVIRONMENT = """
provider "aws" {
  region = "us-east-1"
}

module "network" {
  source = "../modules/network"

  name               = "rehearsal"
  cluster_name       = "rehearsal"
  cidr               = "10.10.0.0/16"
  az_count           = 3
  single_nat_gateway = true
}

module "models" {
  source = "../modules/models"

  cluster_name                   = "rehearsal"
  namespace                      = "inferstack"
  service_account                = "vllm-engine"
  noncurrent_version_expiry_days = 7
  force_destroy                  = true
}

module "karpenter" {
  source = "../modules/karpenter"

  cluster_name = "rehearsal"
}

module "edge" {
  source = "../modules/edge"

  domain_name = "api.example.com"
}

module "ci" {
  source = "../modules/ci"

  name_prefix           = "rehearsal"
  github_repository     = "acme/inferstack"
  apply_environment     = "dev"
  oidc_provider_arn     = "arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com"
  state_bucket_name     = "inferstack-tfstate-ACCOUNT-us-east-1"
  state_key_prefix      = "envs/dev/"
  managed_bucket_prefix = "rehearsal-models-"
}
""".replace("ACCOUNT", ACCOUNT)


def provider_override(endpoint: str) -> str:
    services = ["s3", "sts", "iam", "ec2", "eks", "kms", "logs", "ecr", "sqs", "events", "elasticache", "acm"]
    endpoints = "\n".join(f'    {s} = "{endpoint}"' for s in services)
    return f"""
terraform {{
  backend "local" {{}}
}}

provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {{
{endpoints}
  }}
}}
"""


@dataclass
class Stack:
    name: str
    folder: Path
    var_args: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    replan_exit: int | None = None
    replan_output: str = ""
    destroyed: bool = False
    error: str = ""


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    # Without it every attachment of an AWS-managed policy (the node and CI roles have some) fails.
    with moto_server({"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}) as url:
        yield url


def prepare(tree: Path, endpoint: str) -> list[Stack]:
    shutil.copytree(TF_DIR, tree, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "__pycache__", "tests"))
    for folder, addresses in PLAN_ONLY.items():
        pairs = (address.split(".") for address in addresses)
        blocks = [f'resource "{kind}" "{name}" {{\n  count = 0\n}}\n' for kind, name in pairs]
        (tree / folder / "rehearsal_override.tf").write_text("\n".join(blocks))
    # The state bucket refuses `destroy` (prevent_destroy): allow it here only.
    (tree / "bootstrap" / "rehearsal_override.tf").write_text(
        'resource "aws_s3_bucket" "state" {\n  lifecycle {\n    prevent_destroy = false\n  }\n}\n'
    )
    for root in ("bootstrap", "shared"):
        (tree / root / "provider_override.tf").write_text(provider_override(endpoint))
    environment = tree / "environment"
    environment.mkdir()
    (environment / "main.tf").write_text(ENVIRONMENT)
    (environment / "provider_override.tf").write_text(provider_override(endpoint))
    # The lock files pin the provider; this root gets the environments' one.
    shutil.copy(tree / "envs" / "dev" / ".terraform.lock.hcl", environment / ".terraform.lock.hcl")
    return [
        Stack("bootstrap", tree / "bootstrap"),
        Stack("shared", tree / "shared", ["-var=github_repository=acme/inferstack"]),
        Stack("environment", environment),
    ]


def tf(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_VAR_"))}
    env |= {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1", "AWS_EC2_METADATA_DISABLED": "true"}
    started = time.monotonic()
    proc = subprocess.run(
        [str(TF_SH), *args, "-no-color"],
        cwd=stack.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    took = time.monotonic() - started
    stack.log.append(f"{stack.name}: terraform {args[0]} -> exit {proc.returncode} in {took:.0f} s")
    return proc


def rehearse(stack: Stack) -> Stack:
    """init, apply, re-plan (must be empty), destroy. Destroy runs even when the re-plan differs."""
    steps = [
        ("init", ["init", "-input=false"]),
        ("apply", ["apply", "-auto-approve", "-input=false", *stack.var_args]),
    ]
    for label, args in steps:
        proc = tf(stack, *args)
        if proc.returncode != 0:
            stack.error = f"{label} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            if label == "apply":
                tf(stack, "destroy", "-auto-approve", "-input=false", *stack.var_args)
            return stack
    stack.applied = tf(stack, "state", "list").stdout.split()
    replan = tf(stack, "plan", "-detailed-exitcode", "-input=false", *stack.var_args)
    stack.replan_exit, stack.replan_output = replan.returncode, replan.stdout[-6000:] + replan.stderr[-2000:]
    # The re-plan just refreshed every resource: destroy need not read them all again.
    destroy = tf(stack, "destroy", "-auto-approve", "-input=false", "-refresh=false", *stack.var_args)
    stack.destroyed = destroy.returncode == 0
    if not stack.destroyed:
        stack.error = f"destroy failed:\n{destroy.stdout[-3000:]}\n{destroy.stderr[-3000:]}"
    return stack


def test_apply_replan_destroy_against_moto(moto: str, tmp_path: Path) -> None:
    stacks = prepare(tmp_path / "terraform", moto)
    # Fill the plugin cache once, then run the stacks side by side (they wait on moto, not the CPU).
    first = tf(stacks[0], "init", "-input=false")
    assert first.returncode == 0, first.stdout + first.stderr
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
        done = list(pool.map(rehearse, stacks))
    print(f"\nRehearsal against moto ({moto}), {time.monotonic() - started:.0f} s")
    for stack in done:
        print("\n".join(stack.log))
        print(f"APPLIED FOR REAL, re-planned and destroyed ({stack.name}, {len(stack.applied)}):")
        print("\n".join(f"  {a}" for a in stack.applied))
    print("PLANNED ONLY (mock provider, terraform test):")
    print("\n".join(f"  {folder}: {a}" for folder, addresses in PLAN_ONLY.items() for a in addresses))
    print("\n".join(f"  {m}" for m in PLAN_ONLY_MODULES))
    errors = {s.name: s.error for s in done if s.error}
    assert not errors, errors
    drift = {s.name: s.replan_output for s in done if s.replan_exit != 0}
    assert not drift, f"the second plan is not empty (exit 2 = changes):\n{drift}"
    assert all(s.destroyed for s in done)
    applied = {a for s in done for a in s.applied}
    # The stacks the issue names, each with something real in it.
    for expected in (
        "aws_s3_bucket.state",
        'module.registry.aws_ecr_repository.this["gateway"]',
        # A third-party image's mirror (a name with a registry host and several path components).
        'module.registry.aws_ecr_repository.this["mirror/docker.io/valkey/valkey"]',
        'module.registry.aws_ecr_lifecycle_policy.this["mirror/public.ecr.aws/aws-cli/aws-cli"]',
        "module.ci[0].aws_iam_openid_connect_provider.github[0]",
        "module.network.aws_vpc.this",
        "module.models.aws_s3_bucket.models",
        "module.karpenter.aws_sqs_queue.interruption",
        "module.ci.aws_iam_role.apply[0]",
        "module.edge.aws_acm_certificate.this",
    ):
        assert expected in applied, f"{expected} was not applied: {sorted(applied)}"
