#!/usr/bin/env bash
# Installs the third-party pieces the overlays rely on, at pinned chart versions, with the values
# files next to this script. Idempotent (helm upgrade --install). Run after `terraform apply` and
# `aws eks update-kubeconfig`, before `kubectl apply -k k8s/overlays/...`.
#
#   k8s/addons/install.sh auto        # EKS Auto Mode: AWS provides the NVIDIA device plugin
#   k8s/addons/install.sh karpenter   # self-managed Karpenter: controller + NVIDIA device plugin
#
# karpenter mode reads the cluster name and interruption queue from `terraform output`
# (TF_DIR, default terraform/envs/prod, the environment whose default compute_mode is karpenter).
set -euo pipefail

# Chart versions, pinned. Bump deliberately; the CRDs in ../shared/crds match these releases.
KUBE_PROMETHEUS_STACK_VERSION=88.0.0   # prometheus-operator v0.93.0
KEDA_VERSION=2.20.1
KARPENTER_VERSION=1.14.1               # = terraform/envs/*/main.tf karpenter_version (its IAM policy)
NVIDIA_DEVICE_PLUGIN_VERSION=0.19.0
DCGM_EXPORTER_VERSION=4.8.3

mode="${1:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
values="${here}/values"
repo="$(cd "${here}/../.." && pwd)"

case "${mode}" in
  auto|karpenter) ;;
  *) echo "usage: $0 auto|karpenter" >&2; exit 64 ;;
esac
command -v helm >/dev/null || { echo "helm 3 is needed: https://helm.sh/docs/intro/install/" >&2; exit 69; }

helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
helm repo add kedacore https://kedacore.github.io/charts --force-update
helm repo add nvdp https://nvidia.github.io/k8s-device-plugin --force-update
helm repo add gpu-helm-charts https://nvidia.github.io/dcgm-exporter/helm-charts --force-update
helm repo update

if [[ "${mode}" == karpenter ]]; then
  tf_dir="${TF_DIR:-${repo}/terraform/envs/prod}"
  cluster="$(terraform -chdir="${tf_dir}" output -raw cluster_name)"
  queue="$(terraform -chdir="${tf_dir}" output -raw karpenter_interruption_queue_name)"
  # First: nothing GPU-shaped can be scheduled until Karpenter runs. Its IAM role and Pod
  # Identity association come from Terraform (modules/karpenter).
  helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter \
    --version "${KARPENTER_VERSION}" --namespace kube-system \
    --values "${values}/karpenter.yaml" \
    --set "settings.clusterName=${cluster}" --set "settings.interruptionQueue=${queue}" \
    --wait
  helm upgrade --install nvidia-device-plugin nvdp/nvidia-device-plugin \
    --version "${NVIDIA_DEVICE_PLUGIN_VERSION}" --namespace kube-system \
    --values "${values}/nvidia-device-plugin.yaml" --wait
fi

helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "${KUBE_PROMETHEUS_STACK_VERSION}" --namespace monitoring --create-namespace \
  --values "${values}/kube-prometheus-stack.yaml" --wait
helm upgrade --install keda kedacore/keda \
  --version "${KEDA_VERSION}" --namespace keda --create-namespace \
  --values "${values}/keda.yaml" --wait
# GPU metrics for the GPU dashboard; its pods run only while a GPU node exists.
helm upgrade --install dcgm-exporter gpu-helm-charts/dcgm-exporter \
  --version "${DCGM_EXPORTER_VERSION}" --namespace monitoring \
  --values "${values}/dcgm-exporter.yaml"

echo "add-ons installed (${mode}); next: kubectl apply -k k8s/overlays/$([[ ${mode} == auto ]] && echo aws-gpu || echo aws-gpu-karpenter)"
