#!/usr/bin/env bash
# Each Deployment this release changed goes back to its revision from before the apply (images and
# config), as recorded by apply-release.sh. Every undo is issued first, then each is waited for, so
# one that is slow to recover does not keep the others on the failed release. Terraform changes are
# not reverted: revert the commit for those.
# Usage: rollback.sh [revisions-before.txt]      Environment: NAMESPACE, ENV_NAME
set -euo pipefail
: "${NAMESPACE:?}"
revisions="${1:-revisions-before.txt}"
if [ ! -f "$revisions" ]; then
  echo "::error::no revisions were recorded before the apply (${revisions}): nothing to roll back to"
  exit 1
fi
undone=()
while read -r name before; do
  now="$(kubectl -n "$NAMESPACE" get deployment "$name" \
    -o jsonpath='{.metadata.annotations.deployment\.kubernetes\.io/revision}')"
  if [ "$now" != "$before" ]; then
    echo "rolling back $name: revision $now -> $before"
    kubectl -n "$NAMESPACE" rollout undo "deployment/$name" --to-revision="$before"
    undone+=("$name")
  fi
done < "$revisions"
status=0
for name in "${undone[@]}"; do
  kubectl -n "$NAMESPACE" rollout status "deployment/$name" --timeout=15m || status=1
done
if [ "${#undone[@]}" -eq 0 ]; then
  echo "::error::deployment to ${ENV_NAME:-the environment} failed; no Deployment had changed (first deploy: nothing to return to)"
else
  echo "::error::deployment to ${ENV_NAME:-the environment} failed; rolled back: ${undone[*]}"
fi
exit "$status"
