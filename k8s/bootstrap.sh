#!/usr/bin/env bash
# One command after `terraform apply`: from an empty EKS cluster to the gateway behind its public
# endpoint. Idempotent: run it again after any change (helm upgrade --install, kubectl apply;
# generated secrets are made once and kept).
#
#   k8s/bootstrap.sh dev      # terraform/envs/dev  (EKS Auto Mode by default)
#   k8s/bootstrap.sh prod     # terraform/envs/prod (self-managed Karpenter by default)
#   k8s/bootstrap.sh terraform/envs/dev   # the same, naming the Terraform directory
#
# In order: kubeconfig; cluster values from `terraform output` (scripts/aws-cluster-values.sh);
# Karpenter with its CRDs (karpenter mode); the cluster pieces in k8s/platform (default StorageClass,
# CPU NodePool, network policy enforcement); metrics-server; the AWS Load Balancer Controller
# (karpenter mode; Auto Mode has its own); generated secrets (Grafana admin, first API key);
# kube-prometheus-stack; KEDA; DCGM exporter (+ NVIDIA device plugin in karpenter mode); weights (if
# WEIGHTS_DIR); the app overlay; then it waits for the load balancer and prints the URL.
#
# Environment:
#   TF_DIR            Terraform environment directory (default terraform/envs/<env>)
#   IMAGE_TAG         image tag in ECR (default 0.1.0), GATEWAY_DIGEST / ENGINE_DIGEST to pin
#   INGRESS_SCHEME    internet-facing (default) or internal; CERTIFICATE_ARN overrides Terraform's
#   WEIGHTS_DIR       local model directory to sync to the model bucket first (idempotent)
#   WEIGHTS_MODEL     the fleet model WEIGHTS_DIR holds (default: the catalog's `default` alias)
#   ALERT_WEBHOOK_URL Alertmanager sends alerts there (else receiver `none`, see README)
#   KEYS_CLI    the gateway CLI that makes the first API key (default .venv/bin/inferstack)
#   ENDPOINT_WAIT     seconds to wait for the load balancer's address (default 600)
#   SKIP_APP=1        cluster only: no weights, API key, overlay or endpoint (the pipeline's release
#                     step applies the overlay with pinned digests itself)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"
env_name="${1:-}"
if [[ "${env_name}" == */* && -d "${env_name}" ]]; then
  TF_DIR="${TF_DIR:-$(cd "${env_name}" && pwd)}"
  env_name="$(basename "${env_name}")"
fi
[[ "${env_name}" =~ ^[a-z0-9-]+$ ]] || { echo "usage: $0 <environment (dev, prod) or terraform/envs/DIR>" >&2; exit 64; }
tf_dir="${TF_DIR:-${repo}/terraform/envs/${env_name}}"
values="${here}/addons/values"
cli="${KEYS_CLI:-${repo}/.venv/bin/inferstack}"
# shellcheck source=SCRIPTDIR/addons/versions.env
source "${here}/addons/versions.env"

for tool in terraform aws kubectl helm; do
  command -v "${tool}" >/dev/null || { echo "bootstrap: ${tool} is needed (k8s/README.md)" >&2; exit 69; }
done
if [[ "${SKIP_APP:-0}" != 1 && ! -x "${cli}" ]]; then
  echo "bootstrap: ${cli} is needed for the first API key: run make install" >&2; exit 69
fi

step() { printf '\n== %s\n' "$*"; }
out() { terraform -chdir="${tf_dir}" output -raw "$1"; }
optional() { # a Terraform output that may be null: its string value or nothing
  local v
  v="$(terraform -chdir="${tf_dir}" output -json "$1" 2>/dev/null)" || v=null
  [[ "${v}" == null ]] || { v="${v#\"}"; printf '%s' "${v%\"}"; }
}
helm_install() { # release chart namespace version [helm args...]
  local release="$1" chart="$2" namespace="$3" version="$4"
  shift 4
  helm upgrade --install "${release}" "${chart}" --version "${version}" --namespace "${namespace}" \
    --create-namespace --wait --timeout 15m "$@"
}
secret_exists() { kubectl -n "$1" get secret "$2" >/dev/null 2>&1; }

cluster="$(out cluster_name)"
region="$(out region)"
mode="$(out compute_mode)"
case "${mode}" in
  auto) overlay=aws-gpu; platform=aws-auto ;;
  karpenter) overlay=aws-gpu-karpenter; platform=aws-karpenter ;;
  *) echo "bootstrap: unknown compute_mode '${mode}'" >&2; exit 1 ;;
esac
echo "inferstack bootstrap: environment ${env_name}, cluster ${cluster} (${region}), compute_mode ${mode}"

step "kubeconfig"
aws eks update-kubeconfig --name "${cluster}" --region "${region}" --alias "${cluster}"

step "cluster values from terraform output"
bash "${here}/scripts/aws-cluster-values.sh" "${tf_dir}"

if [[ "${mode}" == karpenter ]]; then
  # Nothing but the system node group exists until Karpenter runs; its CRDs come from their own
  # chart so that an upgrade updates them (helm never upgrades a chart's crds/ directory).
  karpenter_version="$(out karpenter_version)"
  step "Karpenter ${karpenter_version} (CRDs, then the controller)"
  helm_install karpenter-crd oci://public.ecr.aws/karpenter/karpenter-crd kube-system "${karpenter_version}"
  helm_install karpenter oci://public.ecr.aws/karpenter/karpenter kube-system "${karpenter_version}" \
    --skip-crds --values "${values}/karpenter.yaml" \
    --set "settings.clusterName=${cluster}" \
    --set "settings.interruptionQueue=$(out karpenter_interruption_queue_name)"

  step "network policy enforcement (vpc-cni add-on, set by Terraform)"
  cni="$(aws eks describe-addon --cluster-name "${cluster}" --region "${region}" --addon-name vpc-cni \
    --query addon.configurationValues --output text)"
  if [[ "${cni//[[:space:]]/}" != *'"enableNetworkPolicy":"true"'* ]]; then
    echo "bootstrap: the vpc-cni add-on has no enableNetworkPolicy=true: NetworkPolicies would not be" \
      "enforced. Apply terraform/envs/${env_name} (it sets it), then run this again." >&2
    exit 1
  fi
fi

step "cluster pieces: k8s/platform/${platform}"
kubectl apply --server-side -k "${here}/platform/${platform}"

step "metrics-server ${METRICS_SERVER_VERSION}"
helm repo add metrics-server https://kubernetes-sigs.github.io/metrics-server/ --force-update >/dev/null
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
helm repo add gpu-helm-charts https://nvidia.github.io/dcgm-exporter/helm-charts --force-update >/dev/null
helm repo add nvdp https://nvidia.github.io/k8s-device-plugin --force-update >/dev/null
helm repo add eks https://aws.github.io/eks-charts --force-update >/dev/null
helm repo update >/dev/null
helm_install metrics-server metrics-server/metrics-server kube-system "${METRICS_SERVER_VERSION}" \
  --values "${values}/metrics-server.yaml"

if [[ "${mode}" == karpenter ]]; then
  step "AWS Load Balancer Controller ${AWS_LOAD_BALANCER_CONTROLLER_VERSION}"
  vpc_id="$(optional vpc_id)"
  [[ -n "${vpc_id}" ]] || vpc_id="$(aws eks describe-cluster --name "${cluster}" --region "${region}" \
    --query cluster.resourcesVpcConfig.vpcId --output text)"
  helm_install aws-load-balancer-controller eks/aws-load-balancer-controller kube-system \
    "${AWS_LOAD_BALANCER_CONTROLLER_VERSION}" --values "${values}/aws-load-balancer-controller.yaml" \
    --set "clusterName=${cluster}" --set "region=${region}" --set "vpcId=${vpc_id}"
fi

step "secrets (generated once, kept on later runs)"
kubectl apply --server-side -f "${here}/base/namespace.yaml"
kubectl create namespace monitoring --dry-run=client -o yaml | kubectl apply --server-side -f -
if ! secret_exists monitoring grafana-admin; then
  kubectl -n monitoring create secret generic grafana-admin --from-literal=admin-user=admin \
    --from-literal=admin-password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  echo "Grafana admin password generated (k8s/grafana.sh prints it)"
fi
api_key=""
if [[ "${SKIP_APP:-0}" != 1 ]] && ! secret_exists inferstack inferstack-keys; then
  made="$("${cli}" keys create --tenant default --name bootstrap)"
  api_key="$(sed -n 's/^API key[^:]*: //p' <<<"${made}")"
  keys_file="$(mktemp)"
  trap 'rm -f "${keys_file}"' EXIT
  { echo "keys:"; sed -n '/^- key_sha256:/,$p' <<<"${made}"; } > "${keys_file}"
  kubectl -n inferstack create secret generic inferstack-keys --from-file=keys.yaml="${keys_file}"
fi
alert_values=()
if [[ -n "${ALERT_WEBHOOK_URL:-}" ]]; then
  kubectl -n monitoring create secret generic alertmanager-webhook --from-literal=url="${ALERT_WEBHOOK_URL}" \
    --dry-run=client -o yaml | kubectl apply --server-side -f -
  alert_values=(--values "${values}/alertmanager-webhook.yaml")
fi

step "kube-prometheus-stack ${KUBE_PROMETHEUS_STACK_VERSION}, KEDA ${KEDA_VERSION}, DCGM exporter ${DCGM_EXPORTER_VERSION}"
helm_install kube-prometheus-stack prometheus-community/kube-prometheus-stack monitoring \
  "${KUBE_PROMETHEUS_STACK_VERSION}" --values "${values}/kube-prometheus-stack.yaml" "${alert_values[@]}"
helm_install keda kedacore/keda keda "${KEDA_VERSION}" --values "${values}/keda.yaml"
if [[ "${mode}" == karpenter ]]; then
  helm_install nvidia-device-plugin nvdp/nvidia-device-plugin kube-system "${NVIDIA_DEVICE_PLUGIN_VERSION}" \
    --values "${values}/nvidia-device-plugin.yaml"
fi
# Its pods exist only while a GPU node does: no --wait.
helm upgrade --install dcgm-exporter gpu-helm-charts/dcgm-exporter --version "${DCGM_EXPORTER_VERSION}" \
  --namespace monitoring --values "${values}/dcgm-exporter.yaml"

if [[ "${SKIP_APP:-0}" == 1 ]]; then
  echo; echo "cluster ready (SKIP_APP=1: the app overlay is left to the release step)"; exit 0
fi

bucket="$(out models_bucket_name)"
# The weights go where the fleet's engine for WEIGHTS_MODEL reads them: its MODEL_S3_URI
# (fleet/models/<model>.yaml source uri + revision, k8s/fleet/generated), in this cluster's bucket.
fleet="${repo}/k8s/fleet/generated"
weights_model="${WEIGHTS_MODEL:-$(sed -n 's/^ *"default": "\([^"]*\)",\{0,1\}$/\1/p' "${fleet}/catalog.json")}"
weights_uri=""
for f in "${fleet}"/*.yaml; do
  served="$(awk '/- name: MODEL_NAME$/ { getline; print $2; exit }' "${f}")"
  if [[ "${served}" == "${weights_model}" ]]; then
    weights_uri="$(awk '/- name: MODEL_S3_URI$/ { getline; print $2; exit }' "${f}")"
  fi
done
[[ -n "${weights_uri}" ]] || { echo "bootstrap: WEIGHTS_MODEL '${weights_model}' is not in fleet/models" >&2; exit 64; }
weights_uri="s3://${bucket}/${weights_uri#s3://*/}"
if [[ -n "${WEIGHTS_DIR:-}" ]]; then
  step "weights of ${weights_model}: ${WEIGHTS_DIR} -> ${weights_uri}"
  aws s3 sync --only-show-errors "${WEIGHTS_DIR}" "${weights_uri}"
elif ! aws s3 ls "${weights_uri}config.json" >/dev/null 2>&1; then
  echo "bootstrap: warning: no weights in ${weights_uri} yet (WEIGHTS_DIR=...; the other models' go to" \
    "the source.uri/revision of fleet/models/*.yaml)" >&2
fi

step "inferstack: k8s/overlays/${overlay}"
kubectl apply --server-side -k "${here}/overlays/${overlay}"
kubectl -n inferstack rollout status deployment/inferstack-gateway --timeout=10m

step "endpoint"
host=""
deadline=$((SECONDS + ${ENDPOINT_WAIT:-600}))
while [[ -z "${host}" && ${SECONDS} -lt ${deadline} ]]; do
  host="$(kubectl -n inferstack get ingress inferstack-gateway -o jsonpath='{.status.loadBalancer.ingress[0].hostname}')"
  [[ -n "${host}" ]] || sleep 10
done
[[ -n "${host}" ]] || { echo "bootstrap: no load balancer address after ${ENDPOINT_WAIT:-600} s" >&2; exit 1; }
url="$(optional gateway_url)"
if [[ -z "${url}" ]]; then
  if [[ -n "${CERTIFICATE_ARN-$(optional acm_certificate_arn)}" ]]; then url="https://${host}"; else url="http://${host}"; fi
else
  echo "point ${url#https://} at ${host} (CNAME or Route 53 alias) if Terraform did not"
fi
echo
echo "inferstack is up: ${url}"
[[ -z "${api_key}" ]] || echo "first API key (shown once, store it now): ${api_key}"
echo "Grafana: k8s/grafana.sh"
echo "The model wakes on the first request (cold start 6-8 min; k8s/README.md, 'Scale from zero')."
