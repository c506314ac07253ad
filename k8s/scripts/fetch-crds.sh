#!/usr/bin/env bash
# Downloads the CRDs k8s/tests validate custom resources against, at the pinned upstream versions
# (the same files as ../shared/crds on the development machines). For CI runners, which have no
# ../shared:  k8s/scripts/fetch-crds.sh "$RUNNER_TEMP/crds" && export K8S_CRD_DIR="$RUNNER_TEMP/crds"
set -euo pipefail
dest="${1:?usage: $0 DEST_DIR}"
mkdir -p "${dest}"

KARPENTER=v1.14.1        # aws/karpenter-provider-aws (= terraform output karpenter_version)
KEDA=v2.20.1             # kedacore/keda
PROMETHEUS_OPERATOR=v0.93.0
LB_CONTROLLER=v3.5.0     # kubernetes-sigs/aws-load-balancer-controller
GATEWAY_API=v1.6.1       # kubernetes-sigs/gateway-api (standard channel)

urls=(
  "https://raw.githubusercontent.com/aws/karpenter-provider-aws/${KARPENTER}/pkg/apis/crds/karpenter.sh_nodepools.yaml"
  "https://raw.githubusercontent.com/aws/karpenter-provider-aws/${KARPENTER}/pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml"
  "https://raw.githubusercontent.com/kedacore/keda/${KEDA}/config/crd/bases/keda.sh_scaledobjects.yaml"
  "https://raw.githubusercontent.com/kedacore/keda/${KEDA}/config/crd/bases/keda.sh_triggerauthentications.yaml"
  "https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/${LB_CONTROLLER}/config/crd/bases/elbv2.k8s.aws_ingressclassparams.yaml"
  "https://raw.githubusercontent.com/kubernetes-sigs/aws-load-balancer-controller/${LB_CONTROLLER}/config/crd/bases/elbv2.k8s.aws_targetgroupbindings.yaml"
)
for kind in gatewayclasses gateways httproutes; do
  urls+=("https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/${GATEWAY_API}/config/crd/standard/gateway.networking.k8s.io_${kind}.yaml")
done
for kind in servicemonitors podmonitors prometheusrules; do
  urls+=("https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/${PROMETHEUS_OPERATOR}/example/prometheus-operator-crd/monitoring.coreos.com_${kind}.yaml")
done
for url in "${urls[@]}"; do
  curl -fsSL --retry 3 -o "${dest}/${url##*/}" "${url}"
done
echo "CRDs in ${dest}: export K8S_CRD_DIR=${dest}"
