# Sizing: what the engine container requests (k8s manifests, agreed in terraform/README.md; k8s/tests
# read this line) and the GPU types it must fit, with the capacity of each (EC2 instance type
# specifications). One vCPU and 4 GiB stay free for kubelet reserve, the OS and daemonsets (VPC CNI,
# DCGM exporter, node exporter). Output gpu_instance_types checks every type against them.
locals {
  engine_resources = { cpu = "3", memory = "12Gi", gpus = 1 }
  gpu_capacity = {
    "g4dn.xlarge"  = { vcpu = 4, memory_gib = 16 }
    "g5.xlarge"    = { vcpu = 4, memory_gib = 16 }
    "g5.2xlarge"   = { vcpu = 8, memory_gib = 32 }
    "g6.xlarge"    = { vcpu = 4, memory_gib = 16 }
    "g6.2xlarge"   = { vcpu = 8, memory_gib = 32 }
    "g6.12xlarge"  = { vcpu = 48, memory_gib = 192 }
    "g6e.xlarge"   = { vcpu = 4, memory_gib = 32 }
    "g6e.2xlarge"  = { vcpu = 8, memory_gib = 64 }
    "g6e.12xlarge" = { vcpu = 48, memory_gib = 384 }
    "p5.48xlarge"  = { vcpu = 192, memory_gib = 2048 }
  }
}
