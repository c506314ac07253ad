#!/usr/bin/env bash
# Opens the gateway Service to this runner: `kubectl port-forward` of svc/inferstack-gateway's port
# (80 -> targetPort `http`, k8s/base/gateway) to LOCAL_PORT, in the background; returns once
# /healthz answers through it. tests/delivery/test_smoke.py checks the port against the manifest.
#
# Usage: reach-gateway.sh NAMESPACE [LOCAL_PORT, default 8080]    log: port-forward.log
set -euo pipefail
namespace="${1:?namespace}"
local_port="${2:-8080}"
service=svc/inferstack-gateway
service_port=80
kubectl -n "$namespace" port-forward "$service" "${local_port}:${service_port}" > port-forward.log 2>&1 &
forwarder=$!
deadline=$((SECONDS + 60))
until curl -fsS "http://127.0.0.1:${local_port}/healthz" > /dev/null 2>&1; do
  if ! kill -0 "$forwarder" 2>/dev/null; then
    echo "::error::kubectl port-forward exited" >&2
    cat port-forward.log >&2
    exit 1
  fi
  if (( SECONDS > deadline )); then
    echo "::error::the gateway did not answer on 127.0.0.1:${local_port} within 60 s" >&2
    cat port-forward.log >&2
    exit 1
  fi
  sleep 1
done
echo "gateway reachable at http://127.0.0.1:${local_port}"
