#!/usr/bin/env bash
# Opens Grafana on the cluster (after k8s/bootstrap.sh): prints the generated admin login, then
# port-forwards Grafana to http://127.0.0.1:${GRAFANA_PORT:-3000} until Ctrl-C. The inferstack
# dashboards are under Dashboards; Prometheus is their data source.
set -euo pipefail
port="${GRAFANA_PORT:-3000}"
command -v kubectl >/dev/null || { echo "grafana: kubectl is needed" >&2; exit 69; }
secret() { kubectl -n monitoring get secret grafana-admin -o "jsonpath={.data.$1}" | base64 -d; }
user="$(secret admin-user)"
password="$(secret admin-password)"
echo "Grafana: http://127.0.0.1:${port}  user ${user}  password ${password}"
exec kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana "${port}:80"
