mock_provider "aws" {
  source = "../../tests/mocks"
}

override_resource {
  target          = aws_iam_openid_connect_provider.github
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }
}

variables {
  name_prefix         = "inferstack-test"
  github_repository   = "acme/inferstack"
  apply_environment   = "prod"
  state_bucket_name   = "inferstack-tfstate-123456789012"
  state_key_prefix    = "envs/prod/"
  ecr_repository_arns = ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack-test/gateway"]
}

run "trust_is_limited_to_the_repository" {
  command = plan

  assert {
    condition = toset(jsondecode(aws_iam_role.plan.assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"]) == toset([
      "repo:acme/inferstack:pull_request",
      "repo:acme/inferstack:ref:refs/heads/main",
    ])
    error_message = "The plan role trusts pull requests and main of this repository only."
  }

  assert {
    condition     = jsondecode(aws_iam_role.apply.assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:acme/inferstack:environment:prod"]
    error_message = "The apply role trusts only jobs in the protected environment of this repository."
  }

  assert {
    condition = alltrue([for r in [aws_iam_role.plan, aws_iam_role.apply, aws_iam_role.push[0]] : (
      jsondecode(r.assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
      && !strcontains(r.assume_role_policy, "*")
      && !contains(keys(jsondecode(r.assume_role_policy).Statement[0].Condition), "StringLike")
    )])
    error_message = "Every role checks the audience and matches subjects exactly (no wildcards, no StringLike)."
  }

  assert {
    condition     = jsondecode(aws_iam_role.plan.assume_role_policy).Statement[0].Principal.Federated == "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    error_message = "Roles must trust the GitHub OIDC provider."
  }

  assert {
    condition     = aws_iam_openid_connect_provider.github[0].url == "https://token.actions.githubusercontent.com" && aws_iam_openid_connect_provider.github[0].client_id_list == toset(["sts.amazonaws.com"])
    error_message = "The OIDC provider must be GitHub's with the STS audience."
  }
}

run "plan_role_is_read_only" {
  command = plan

  assert {
    condition     = aws_iam_role_policy_attachment.plan_read_only.policy_arn == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    error_message = "The plan role is read-only."
  }

  assert {
    condition     = jsondecode(aws_iam_role_policy.plan_state_lock.policy).Statement[0].Resource == "arn:aws:s3:::inferstack-tfstate-123456789012/envs/prod/*.tflock"
    error_message = "The plan role may write only this environment's lock file."
  }
}

run "push_role_is_scoped_to_repositories" {
  command = plan

  assert {
    condition = one([
      for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Resource if s.Sid == "PushToOurRepositories"
    ]) == ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack-test/gateway"]
    error_message = "Pushes are allowed to the listed repositories only."
  }
}

run "existing_oidc_provider" {
  command = plan

  variables {
    create_oidc_provider = false
    oidc_provider_arn    = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    ecr_repository_arns  = []
  }

  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 0 && length(aws_iam_role.push) == 0
    error_message = "No provider is created when one is passed in, and no push role without repositories."
  }
}

run "rejects_wildcard_repository" {
  command = plan

  variables {
    github_repository = "acme/*"
  }

  expect_failures = [var.github_repository]
}

run "requires_an_oidc_provider" {
  command = plan

  variables {
    create_oidc_provider = false
  }

  expect_failures = [aws_iam_role.plan]
}
