# prod's choices in modules/platform: the shape (Karpenter, one NAT per AZ) and the overlay-facing
# outputs. The names are the same as dev's (terraform/tests checks outputs.tf).

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  public_access_cidrs = ["203.0.113.0/24"]
  github_repository   = "acme/inferstack"
  state_bucket_name   = "inferstack-tfstate-123456789012-us-east-1"
}

override_resource {
  target          = module.platform.module.ci[0].aws_iam_role.apply
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/inferstack-prod-ci-apply" }
}

run "prod_shape" {
  command = plan

  assert {
    condition     = output.cluster_name == "inferstack-prod" && output.compute_mode == "karpenter"
    error_message = "prod runs self-managed Karpenter."
  }

  assert {
    condition     = length(module.platform.nat_public_ips) == 3
    error_message = "prod has one NAT gateway per AZ."
  }

  assert {
    condition     = output.karpenter_node_role_name == "inferstack-prod-karpenter-node" && output.karpenter_interruption_queue_name == "inferstack-prod"
    error_message = "The overlay's EC2NodeClass role and the chart's interruption queue."
  }

  assert {
    condition     = strcontains(output.karpenter_helm_command, "--version 1.14.1") && strcontains(output.karpenter_helm_command, "--set settings.interruptionQueue=inferstack-prod")
    error_message = "The Helm command installs the pinned Karpenter with prod's queue."
  }

  assert {
    condition     = module.platform.system_node_group_name == "system"
    error_message = "Karpenter needs the system node group to run on."
  }

  assert {
    condition     = module.platform.engine_service_account == "inferstack/vllm-engine"
    error_message = "Engine role for inferstack/vllm-engine."
  }

  assert {
    condition     = output.ci_apply_role_arn == "arn:aws:iam::123456789012:role/inferstack-prod-ci-apply"
    error_message = "CI roles exist when a repository is given."
  }
}
