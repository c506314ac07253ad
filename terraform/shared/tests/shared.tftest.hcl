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

override_resource {
  target          = module.registry.aws_ecr_repository.this["mirror/docker.io/valkey/valkey"]
  override_during = plan
  values = {
    arn            = "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/docker.io/valkey/valkey"
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/mirror/docker.io/valkey/valkey"
  }
}

override_resource {
  target          = module.registry.aws_ecr_repository.this["mirror/public.ecr.aws/aws-cli/aws-cli"]
  override_during = plan
  values = {
    arn            = "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/public.ecr.aws/aws-cli/aws-cli"
    repository_url = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/mirror/public.ecr.aws/aws-cli/aws-cli"
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

  assert {
    condition = output.ecr_mirror_urls == {
      "docker.io/valkey/valkey"        = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/mirror/docker.io/valkey/valkey"
      "public.ecr.aws/aws-cli/aws-cli" = "123456789012.dkr.ecr.us-east-1.amazonaws.com/inferstack/mirror/public.ecr.aws/aws-cli/aws-cli"
    }
    error_message = "One mirror per third-party image, in the same registry as ours."
  }

  assert {
    condition = one([for s in jsondecode(module.ci[0].push_role_policy).Statement : s.Resource if s.Sid == "MirrorThirdPartyImages"]) == [
      "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/docker.io/valkey/valkey",
      "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/public.ecr.aws/aws-cli/aws-cli",
    ]
    error_message = "The push role may copy into exactly the mirror repositories."
  }

  assert {
    condition     = one([for s in jsondecode(module.ci[0].push_role_policy).Statement : s.Resource if s.Sid == "PushToOurRepositories"]) == ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack/engine", "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/gateway"]
    error_message = "Our images' statement names our two repositories, no mirror."
  }
}

run "without_a_repository_only_the_registry" {
  command = plan

  assert {
    condition     = length(module.ci) == 0 && output.ci_push_role_arn == null
    error_message = "No CI pieces without a repository."
  }
}
