"""What the catalog knows about GPUs and the instances that carry them (AWS, as of 2026).

Names are the values of the well-known node label `instance-gpu-name` (Karpenter:
`karpenter.k8s.aws/instance-gpu-name`, EKS Auto Mode: `eks.amazonaws.com/instance-gpu-name`),
lowercase as AWS writes them. Memory is per GPU, in GiB as sold (GB), used only for the rough fit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    memory_gib: float
    # EC2 instance families with this GPU, and the GPU counts their sizes offer.
    families: tuple[str, ...]
    counts: tuple[int, ...]


GPUS: dict[str, Gpu] = {
    "t4": Gpu(16, ("g4dn",), (1, 4, 8)),
    "a10g": Gpu(24, ("g5",), (1, 4, 8)),
    "l4": Gpu(24, ("g6",), (1, 4, 8)),
    "l40s": Gpu(48, ("g6e",), (1, 4, 8)),
    # p4d has 40 GB A100s, p4de 80 GB; both carry the label value `a100`, so the fit check
    # assumes the smaller.
    "a100": Gpu(40, ("p4d", "p4de"), (8,)),
    "h100": Gpu(80, ("p5",), (8,)),
    "h200": Gpu(141, ("p5e", "p5en"), (8,)),
}

# Label keys per node provisioner; the pod names both (ORed node selector terms) so one manifest
# serves either cluster mode.
GPU_NAME_KEYS = ("karpenter.k8s.aws/instance-gpu-name", "eks.amazonaws.com/instance-gpu-name")
GPU_COUNT_KEYS = ("karpenter.k8s.aws/instance-gpu-count", "eks.amazonaws.com/instance-gpu-count")
FAMILY_KEYS = ("karpenter.k8s.aws/instance-family", "eks.amazonaws.com/instance-family")

# Bytes per weight for the dtypes the fit check understands.
DTYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}

# What vLLM reserves outside the KV cache and weights (CUDA context, activations, CUDA graphs):
# a rough per-GPU allowance, not a measurement.
RUNTIME_OVERHEAD_GIB = 1.5

# vLLM 0.32's allowed --max-lora-rank values (vllm/config/lora.py, MaxLoRARanks).
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
