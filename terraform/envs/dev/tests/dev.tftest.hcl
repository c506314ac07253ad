# The environment wires the modules together: these runs check the names and outputs the
# Kubernetes overlay (k8s/overlays/aws-gpu) and the pipeline consume.

mock_provider "aws" {
  source = "../../tests/mocks"
}

override_data {
  target = data.aws_ecr_repository.this["gateway"]
  values = {
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/gateway"
  }
}

override_data {
  target = data.aws_ecr_repository.this["engine"]
  values = {
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/engine"
  }
}

run "auto_mode_outputs_for_the_overlay" {
  command = plan

  assert {
    condition     = output.cluster_name == "inferstack-dev" && output.namespace == "inferstack"
    error_message = "The overlay expects cluster inferstack-dev and namespace inferstack."
  }

  assert {
    condition     = output.karpenter_node_role_name == "inferstack-dev-auto-node" && output.karpenter_interruption_queue_name == null
    error_message = "In Auto Mode the GPU NodeClass uses the Auto Mode node role and there is no queue."
  }

  assert {
    condition     = output.karpenter_discovery_tag == { "karpenter.sh/discovery" = "inferstack-dev" }
    error_message = "Discovery tag value must be the cluster name."
  }

  assert {
    condition     = output.ecr_gateway_url == "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/gateway" && output.ecr_engine_url == "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/engine"
    error_message = "ECR URLs for gateway and engine images."
  }

  assert {
    condition     = module.models.engine_service_account == "inferstack/vllm-engine"
    error_message = "Engine role bound to inferstack/vllm-engine."
  }

  assert {
    condition     = length(module.network.nat_public_ips) == 1
    error_message = "dev uses a single NAT gateway."
  }

  assert {
    condition     = output.update_kubeconfig_command == "aws eks update-kubeconfig --region us-east-1 --name inferstack-dev"
    error_message = "kubeconfig command."
  }

  assert {
    condition     = output.ci_plan_role_arn == null && output.karpenter_helm_command == null
    error_message = "No CI roles without a repository; no Helm command in Auto Mode."
  }
}

run "karpenter_mode_and_ci" {
  command = plan

  variables {
    compute_mode      = "karpenter"
    github_repository = "acme/inferstack"
    state_bucket_name = "inferstack-tfstate-123456789012-us-east-1"
  }

  assert {
    condition     = output.karpenter_interruption_queue_name == "inferstack-dev"
    error_message = "Karpenter mode exports the interruption queue for the chart."
  }

  assert {
    condition     = output.karpenter_node_role_name == "inferstack-dev-karpenter-node"
    error_message = "Karpenter mode exports the Karpenter node role for the EC2NodeClass."
  }

  assert {
    condition     = strcontains(output.karpenter_helm_command, "--set settings.interruptionQueue=inferstack-dev")
    error_message = "The Helm command must carry the queue name."
  }

  assert {
    condition     = module.eks.system_node_group_name == "system"
    error_message = "Karpenter mode needs the system node group."
  }

  assert {
    condition     = length(module.ci) == 1
    error_message = "A repository turns the CI roles on."
  }
}

run "ci_needs_the_state_bucket" {
  command = plan

  variables {
    github_repository = "acme/inferstack"
    state_bucket_name = null # terraform.tfvars sets it
  }

  expect_failures = [var.state_bucket_name]
}

run "https_endpoint_and_elasticache_options" {
  command = plan

  variables {
    domain_name         = "api.example.com"
    elasticache_enabled = true
  }

  assert {
    condition     = output.gateway_url == "https://api.example.com" && length(module.edge) == 1
    error_message = "A domain gives an ACM certificate and the URL the README prints."
  }

  assert {
    condition     = length(module.cache) == 1
    error_message = "elasticache_enabled gives the gateway a redis_url."
  }
}

run "defaults_use_the_in_cluster_redis_and_no_certificate" {
  command = plan

  assert {
    condition     = output.redis_url == null && output.gateway_url == null && output.acm_certificate_arn == null
    error_message = "Default: in-cluster Redis (k8s side), no certificate."
  }
}
