#!/usr/bin/env bash
# terraform plan (pull requests) or plan + apply of the same saved plan (deploy) for one environment.
#
# Usage: terraform-env.sh plan|apply ENV
# Environment: TF_STATE_BUCKET, AWS_REGION (backend); the TF_VAR_* the workflow sets in its top-level
# `env:` (the only place a workflow sets them; the rest is terraform/envs/<env>'s committed tfvars).
# plan writes plan-<env>.txt in the working directory; apply writes cluster= and namespace= to
# $GITHUB_OUTPUT when set.
set -euo pipefail
mode="${1:?plan or apply}"
env_name="${2:?environment}"
: "${TF_STATE_BUCKET:?}" "${AWS_REGION:?}"
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/terraform/envs/${env_name}"
terraform -chdir="$dir" init -input=false \
  -backend-config="bucket=${TF_STATE_BUCKET}" -backend-config="region=${AWS_REGION}"
# Plan and apply the same saved plan: what is applied is what the log shows.
terraform -chdir="$dir" plan -input=false -no-color -out=tfplan
case "$mode" in
  plan)
    terraform -chdir="$dir" show -no-color tfplan > "plan-${env_name}.txt"
    ;;
  apply)
    terraform -chdir="$dir" apply -input=false -no-color tfplan
    {
      echo "cluster=$(terraform -chdir="$dir" output -raw cluster_name)"
      echo "namespace=$(terraform -chdir="$dir" output -raw namespace)"
    } >> "${GITHUB_OUTPUT:-/dev/null}"
    ;;
  *) echo "terraform-env: plan or apply, not $mode" >&2; exit 2 ;;
esac
