"""Capacity and autoscaling: replicas wanted and ready, GPU nodes, pending pods, autoscaler input.

Engine Deployments and their KEDA ScaledObjects are recognised by name (conventions.ENGINE_WORKLOAD).
"""

from __future__ import annotations

from typing import Any

from ..conventions import ENGINE_WORKLOAD, GPU_POD_PENDING_SECONDS, KARPENTER_GPU_RESOURCE
from ..rules_src.recording import GPU_POD_PENDING
from .common import MODEL, NS, Board, Q, single, ts

UID = "inferstack-capacity"
_GPU_NODES = f'karpenter_nodes_allocatable{{resource_type="{KARPENTER_GPU_RESOURCE}"}}'


def build() -> dict[str, Any]:
    b = Board(UID, "inferstack / Capacity and autoscaling",
              "Engine replicas, GPU nodes, pending pods and the autoscaler's input against its threshold.",
              ["capacity", "autoscaling", "karpenter", "keda"])

    b.row("Now")
    b.add(single("GPU nodes", Q(f"count({_GPU_NODES} > 0)")), w=6, h=4)
    pending = single("Pending GPU pods", Q(f"count({GPU_POD_PENDING}{{{NS}}})"),
                     thresholds=[(None, "green"), (1, "orange")])
    b.add(pending.no_value("0"), w=6, h=4)
    b.add(single("Longest GPU pod wait", Q(f"max({GPU_POD_PENDING}{{{NS}}})"), unit="s",
                 thresholds=[(None, "green"), (GPU_POD_PENDING_SECONDS, "red")]).no_value("0"), w=6, h=4)
    b.add(single("Models with demand and no ready replica",
                 Q(f"count((sum by (model) (inferstack_model_demand{{{MODEL}}}) > 0)\n"
                   " unless on (model)\n"
                   f' (sum by (model) (inferstack_upstream_replicas{{state="ready", {MODEL}}}) > 0))\n'
                   # A count of nothing is 0, not "no data".
                   " or vector(0)"),
                 thresholds=[(None, "green"), (1, "red")]).no_value("0"), w=6, h=4)

    b.row("Replicas")
    b.add(ts("Engine replicas: desired vs ready",
             Q(f'sum by (deployment) (kube_deployment_spec_replicas{{{NS}, deployment=~"{ENGINE_WORKLOAD}"}})',
               "{{deployment}} desired"),
             Q(f'sum by (deployment) (kube_deployment_status_replicas_ready{{{NS}, deployment=~"{ENGINE_WORKLOAD}"}})',
               "{{deployment}} ready"),
             description="From kube-state-metrics. A gap that lasts means pods wait for a node or fail "
                         "to start."), w=12)
    b.add(ts("Replicas as the gateway sees them",
             Q(f"sum by (model, state) (inferstack_upstream_replicas{{{MODEL}}})", "{{model}} {{state}}"),
             description="ready: routable. ejected: taken out by outlier detection for a while."), w=12)
    b.add(ts("Autoscaler input vs threshold",
             Q(f'max by (scaledObject) (keda_scaler_metrics_value{{exported_namespace=~"$namespace", '
               f'scaledObject=~"{ENGINE_WORKLOAD}"}})', "{{scaledObject}} input"),
             Q(f'max by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_spec_target_metric{{{NS}, '
               f'horizontalpodautoscaler=~"keda-hpa-{ENGINE_WORKLOAD}"}})', "{{horizontalpodautoscaler}} threshold"),
             description="KEDA's value for the trigger (its namespace label arrives as exported_namespace) "
                         "and the target of the HPA it manages: input above threshold means scale-out."),
          w=12)
    b.add(ts("Scale-from-zero signal",
             Q(f"sum by (model) (inferstack_model_demand{{{MODEL}}})", "{{model}} demand"),
             Q(f"sum by (model) (inferstack_held_requests{{{MODEL}}})", "{{model}} held"),
             description="inferstack_model_demand is what KEDA reads while a model has no engine pod: "
                         "the engines' own metrics vanish at zero replicas."), w=12)

    b.row("GPU nodes and pending pods")
    b.add(ts("GPU nodes per node pool", Q(f"count by (nodepool) ({_GPU_NODES} > 0)", "{{nodepool}}"),
             stack=True, description="Karpenter's nodes that offer nvidia.com/gpu."))
    b.add(ts("Node pool GPUs: used vs limit",
             Q(f'sum by (nodepool) (karpenter_nodepools_usage{{resource_type="{KARPENTER_GPU_RESOURCE}"}})',
               "{{nodepool}} used"),
             Q(f'sum by (nodepool) (karpenter_nodepools_limit{{resource_type="{KARPENTER_GPU_RESOURCE}"}})',
               "{{nodepool}} limit"),
             description="At the limit Karpenter launches no more GPU nodes: pods stay Pending."))
    b.add(ts("Pending GPU pods: time waiting",
             Q(f"max by (namespace, pod) ({GPU_POD_PENDING}{{{NS}}})", "{{pod}}"), unit="s",
             thresholds=[(None, "green"), (GPU_POD_PENDING_SECONDS, "red")],
             description="Since pod creation. A cold start (node, image pull, model load) is 6-8 min on EKS."))
    return b.json()
