#!/usr/bin/env bash
# Each Deployment this release changed goes back to its revision from before the apply (images and
# config), as recorded by apply-release.sh. Terraform changes are not reverted: revert the commit.
# Usage: rollback.sh [revisions-before.txt]      Environment: NAMESPACE, ENV_NAME
set -euo pipefail
: "${NAMESPACE:?}"
revisions="${1:-revisions-before.txt}"
if [ ! -f "$revisions" ]; then
  echo "::error::no revisions were recorded before the apply (${revisions}): nothing to roll back to"
  exit 1
fi
while read -r name before; do
  now="$(kubectl -n "$NAMESPACE" get deployment "$name" \
    -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')"
  if [ "$now" != "$before" ]; then
    echo "rolling back $name: revision $now -> $before"
    kubectl -n "$NAMESPACE" rollout undo "deployment/$name" --to-revision="$before"
    kubectl -n "$NAMESPACE" rollout status "deployment/$name" --timeout=15m
  fi
done < "$revisions"
echo "::error::deployment to ${ENV_NAME:-the environment} failed; changed Deployments were rolled back"
