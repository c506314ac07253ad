# The composition, for both compute modes and every optional piece. envs/*/tests check only each
# environment's choices.

mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  environment         = "test"
  name                = "inferstack-test"
  kubernetes_version  = "1.35"
  compute_mode        = "auto"
  karpenter_version   = "1.14.1"
  vpc_cidr            = "10.30.0.0/16"
  single_nat_gateway  = true
  public_access_cidrs = ["203.0.113.0/24"]
  log_retention_days  = 14
  gpu_instance_types  = ["g6.xlarge"]
}

run "auto_mode" {
  command = plan

  assert {
    condition     = output.compute_mode == "auto" && output.karpenter_node_role_name == "inferstack-test-auto-node"
    error_message = "Auto Mode: the GPU NodeClass uses the Auto Mode node role."
  }

  assert {
    condition = (output.karpenter_interruption_queue_name == null && output.karpenter_controller_role_arn == null
    && output.karpenter_helm_command == null && output.system_node_group_name == null && output.lb_controller_role_arn == null)
    error_message = "Auto Mode: no Karpenter of our own, no node group, the built-in load balancing."
  }

  assert {
    condition     = length(output.nat_public_ips) == 1 && output.karpenter_discovery_tag == { "karpenter.sh/discovery" = "inferstack-test" }
    error_message = "single_nat_gateway gives one NAT gateway; the discovery tag is the cluster name."
  }

  assert {
    condition     = output.ci_plan_role_arn == null && output.ci_apply_role_arn == null
    error_message = "No repository, no CI roles."
  }

  assert {
    condition     = output.engine_resources == { cpu = "3", memory = "12Gi", gpus = 1 } && output.namespace == "inferstack"
    error_message = "The engine's requests the k8s manifests use."
  }
}

run "karpenter_mode_with_a_partial_node_group_and_ci" {
  command = plan

  variables {
    compute_mode       = "karpenter"
    single_nat_gateway = false
    system_node_group  = { instance_types = ["m7i.large"] } # sizes: modules/eks defaults
    github_repository  = "acme/inferstack"
    state_bucket_name  = "inferstack-tfstate-123456789012-us-east-1"
  }

  override_resource {
    target          = module.ci[0].aws_iam_role.plan
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:role/inferstack-test-ci-plan" }
  }

  assert {
    condition     = output.karpenter_node_role_name == "inferstack-test-karpenter-node" && output.karpenter_interruption_queue_name == "inferstack-test"
    error_message = "Karpenter mode exports the Karpenter node role and interruption queue."
  }

  assert {
    condition     = strcontains(output.karpenter_helm_command, "--version 1.14.1") && strcontains(output.karpenter_helm_command, "--set settings.interruptionQueue=inferstack-test")
    error_message = "The Helm command carries the release and the queue."
  }

  assert {
    condition     = output.system_node_group_name == "system" && length(output.nat_public_ips) == 3
    error_message = "Karpenter mode needs the system node group; one NAT gateway per AZ."
  }

  assert {
    condition     = output.ci_plan_role_arn == "arn:aws:iam::123456789012:role/inferstack-test-ci-plan"
    error_message = "A repository turns the CI roles on."
  }
}

run "ci_needs_the_state_bucket" {
  command = plan

  variables {
    github_repository = "acme/inferstack"
  }

  expect_failures = [var.state_bucket_name]
}

run "a_gpu_type_the_engine_does_not_fit_is_refused" {
  command = plan

  variables {
    gpu_instance_types = ["g6.xlarge", "g4dn.2xlarge"] # not in sizing.tf
  }

  expect_failures = [output.gpu_instance_types]
}

run "https_endpoint_and_elasticache" {
  command = plan

  variables {
    domain_name         = "api.example.com"
    elasticache_enabled = true
  }

  override_resource {
    target          = module.cache[0].aws_elasticache_replication_group.this
    override_during = plan
    values          = { primary_endpoint_address = "master.inferstack-test.abc123.use1.cache.amazonaws.com" }
  }

  assert {
    condition     = output.gateway_url == "https://api.example.com"
    error_message = "A domain gives an ACM certificate and the URL."
  }

  assert {
    condition     = output.redis_url == "rediss://master.inferstack-test.abc123.use1.cache.amazonaws.com:6379"
    error_message = "elasticache_enabled gives the gateway a TLS redis_url."
  }
}
