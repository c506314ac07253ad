# dev's choices in modules/platform: Auto Mode, one NAT gateway, the names and outputs the Kubernetes
# overlay (k8s/overlays/aws-gpu) and the pipeline consume. Both compute modes, the CI roles and the
# optional pieces are tested once, in modules/platform/tests.

mock_provider "aws" {
  source = "../../tests/mocks"
}

override_data {
  target = module.platform.data.aws_ecr_repository.this["gateway"]
  values = {
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/gateway"
  }
}

override_data {
  target = module.platform.data.aws_ecr_repository.this["engine"]
  values = {
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/engine"
  }
}

run "auto_mode_outputs_for_the_overlay" {
  command = plan

  assert {
    condition     = output.cluster_name == "inferstack-dev" && output.namespace == "inferstack" && output.compute_mode == "auto"
    error_message = "The overlay expects cluster inferstack-dev in Auto Mode and namespace inferstack."
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
    condition     = module.platform.engine_service_account == "inferstack/vllm-engine"
    error_message = "Engine role bound to inferstack/vllm-engine."
  }

  assert {
    condition     = length(module.platform.nat_public_ips) == 1
    error_message = "dev uses a single NAT gateway."
  }

  assert {
    condition     = output.update_kubeconfig_command == "aws eks update-kubeconfig --region us-east-1 --name inferstack-dev"
    error_message = "kubeconfig command."
  }

  assert {
    condition     = output.ci_plan_role_arn == null && output.karpenter_helm_command == null && module.platform.system_node_group_name == null
    error_message = "No CI roles without a repository; no Helm command and no node group in Auto Mode."
  }

  assert {
    condition     = output.gpu_instance_types == tolist(["g6.xlarge", "g5.xlarge", "g6.2xlarge", "g6e.12xlarge"]) && output.karpenter_version == "1.14.1"
    error_message = "dev's GPU types and Karpenter release."
  }
}

run "the_pipeline_turns_the_ci_roles_on" {
  command = plan

  override_resource {
    target          = module.platform.module.ci[0].aws_iam_role.plan
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/inferstack-dev-ci-plan" }
  }

  override_resource {
    target          = module.platform.module.ci[0].aws_iam_role.apply
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/inferstack-dev-ci-apply" }
  }

  variables {
    github_repository = "acme/inferstack"
    state_bucket_name = "inferstack-tfstate-123456789012-us-east-1"
  }

  assert {
    condition     = output.ci_plan_role_arn != null && output.ci_apply_role_arn != null
    error_message = "A repository turns the CI roles on."
  }
}

run "https_endpoint_and_elasticache_options" {
  command = plan

  override_resource {
    target          = module.platform.module.cache[0].aws_elasticache_replication_group.this
    override_during = plan
    values          = { primary_endpoint_address = "master.inferstack-dev.abc123.use1.cache.amazonaws.com" }
  }

  variables {
    domain_name         = "api.example.com"
    elasticache_enabled = true
  }

  assert {
    condition     = output.gateway_url == "https://api.example.com"
    error_message = "A domain gives an ACM certificate and the URL the README prints."
  }

  assert {
    condition     = output.redis_url == "rediss://master.inferstack-dev.abc123.use1.cache.amazonaws.com:6379"
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
