"""GPUs, from NVIDIA's DCGM exporter.

Series are attributed to the pod using the GPU (``namespace``, ``pod``): the exporter needs its
Kubernetes mapping on (the GPU operator's default) and the ServiceMonitor ``honorLabels: true``,
or the workload's namespace arrives as ``exported_namespace``.
"""

from __future__ import annotations

from typing import Any

from .common import NS, Board, Q, single, ts

UID = "inferstack-gpus"
_GPU = "{{Hostname}} gpu{{gpu}} {{pod}}"


def _by_gpu(metric: str) -> str:
    return f"max by (Hostname, gpu, pod) ({metric}{{{NS}}})"


def build() -> dict[str, Any]:
    b = Board(UID, "inferstack / GPUs", "NVIDIA GPUs of the engine pods (DCGM exporter).",
              ["gpu", "dcgm"], model=False)
    b.row("Fleet")
    b.add(single("GPUs in use", Q(f"count(DCGM_FI_DEV_GPU_UTIL{{{NS}}})")), w=6, h=4)
    b.add(single("Mean utilisation", Q(f"avg(DCGM_FI_DEV_GPU_UTIL{{{NS}}})"), unit="percent",
                 thresholds=[(None, "orange"), (30, "green")],
                 description="Low means paid-for GPUs idle: consolidate or scale in."), w=6, h=4)
    b.add(single("Power draw", Q(f"sum(DCGM_FI_DEV_POWER_USAGE{{{NS}}})"), unit="watt"), w=6, h=4)
    b.add(single("Hottest GPU", Q(f"max(DCGM_FI_DEV_GPU_TEMP{{{NS}}})"), unit="celsius",
                 thresholds=[(None, "green"), (80, "orange"), (87, "red")]), w=6, h=4)

    b.row("Per GPU")
    b.add(ts("Utilisation", Q(_by_gpu("DCGM_FI_DEV_GPU_UTIL"), _GPU), unit="percent", max_=100,
             description="Share of time a kernel ran. 100 % does not mean the SMs are busy: "
                         "see tensor-core activity."), w=12)
    b.add(ts("Tensor-core activity", Q(_by_gpu("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"), _GPU),
             unit="percentunit", max_=1,
             description="Share of cycles the tensor pipes were active: the real work of a transformer."),
          w=12)
    b.add(ts("Memory used",
             Q(f"max by (Hostname, gpu, pod) (DCGM_FI_DEV_FB_USED{{{NS}}}) * 1024 * 1024", _GPU),
             unit="bytes", description="Frame buffer in use. vLLM reserves most of it for the KV cache "
                                       "at start (--gpu-memory-utilization), so it is flat by design."))
    b.add(ts("Power", Q(_by_gpu("DCGM_FI_DEV_POWER_USAGE"), _GPU), unit="watt"))
    b.add(ts("Temperature", Q(_by_gpu("DCGM_FI_DEV_GPU_TEMP"), _GPU), unit="celsius",
             thresholds=[(None, "green"), (80, "orange"), (87, "red")]))
    return b.json()
