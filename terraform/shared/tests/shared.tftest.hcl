# One registry and one push role for both environments; the account's only GitHub OIDC provider.

mock_provider "aws" {
  source = "../tests/mocks"
}

override_resource {
  target          = module.ci[0].aws_iam_openid_connect_provider.github
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }
}

override_resource {
  target          = module.registry.aws_ecr_repository.this["gateway"]
  override_during = plan
  values = {
    arn            = "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/gateway"
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/gateway"
  }
}

override_resource {
  target          = module.registry.aws_ecr_repository.this["engine"]
  override_during = plan
  values = {
    arn            = "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/engine"
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/engine"
  }
}

run "one_registry_one_push_role" {
  command = plan

  variables {
    github_repository = "acme/inferstack"
  }

  assert {
    condition     = output.ecr_gateway_url == "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/gateway" && output.ecr_engine_url == "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/engine"
    error_message = "Repositories inferstack/gateway and inferstack/engine, shared by dev and prod."
  }

  assert {
    condition     = length(module.ci[0].trusted_subjects.push) == 1
    error_message = "One push role."
  }

  assert {
    condition     = output.github_oidc_provider_arn == "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    error_message = "The shared root owns the account's GitHub OIDC provider."
  }
}

run "without_a_repository_only_the_registry" {
  command = plan

  assert {
    condition     = length(module.ci) == 0 && output.ci_push_role_arn == null
    error_message = "No CI pieces without a repository."
  }
}
