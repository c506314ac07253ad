#!/usr/bin/env bash
# Applies a rendered release (release.py's release.yaml) to the environment's cluster and waits
# for every Deployment to roll out. First records each Deployment's revision, so that rollback.sh
# returns exactly the Deployments this release changed (the first deploy has nothing to return to).
#
# Usage: apply-release.sh RELEASE_YAML      Environment: CLUSTER, NAMESPACE, AWS_REGION
# Writes revisions-before.txt in the working directory.
set -euo pipefail
release="${1:?release.yaml}"
: "${CLUSTER:?}" "${NAMESPACE:?}" "${AWS_REGION:?}"
aws eks update-kubeconfig --name "$CLUSTER" --region "$AWS_REGION"
kubectl -n "$NAMESPACE" get deployments -o json 2>/dev/null \
  | jq -r '.items[] | "\(.metadata.name) \(.metadata.annotations["deployment.kubernetes.io/revision"])"' \
  > revisions-before.txt || true
# Server-side: the dashboards' ConfigMaps exceed the client-side last-applied annotation limit.
kubectl apply --server-side --force-conflicts -f "$release"
# Engines scaled to zero by KEDA report done at once; the smoke test wakes them.
for d in $(kubectl -n "$NAMESPACE" get deployments -o name); do
  kubectl -n "$NAMESPACE" rollout status "$d" --timeout=15m
done
