# prod differs from dev in shape, not in names: check the shape and the overlay-facing outputs.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  public_access_cidrs = ["203.0.113.0/24"]
  github_repository   = "acme/inferstack"
  state_bucket_name   = "inferstack-tfstate-123456789012-us-east-1"
}

run "prod_shape" {
  command = plan

  assert {
    condition     = output.cluster_name == "inferstack-prod" && output.compute_mode == "karpenter"
    error_message = "prod runs self-managed Karpenter."
  }

  assert {
    condition     = length(module.network.nat_public_ips) == 3
    error_message = "prod has one NAT gateway per AZ."
  }

  assert {
    condition     = output.karpenter_node_role_name == "inferstack-prod-karpenter-node" && output.karpenter_interruption_queue_name == "inferstack-prod"
    error_message = "The overlay's EC2NodeClass role and the chart's interruption queue."
  }

  assert {
    condition     = module.eks.system_node_group_name == "system"
    error_message = "Karpenter needs the system node group to run on."
  }

  assert {
    condition     = module.models.engine_service_account == "inferstack/vllm-engine"
    error_message = "Engine role for inferstack/vllm-engine."
  }

  assert {
    condition     = length(module.ci) == 1
    error_message = "CI roles exist when a repository is given."
  }
}
