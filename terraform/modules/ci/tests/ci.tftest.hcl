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
  name_prefix           = "inferstack-test"
  github_repository     = "acme/inferstack"
  apply_environment     = "prod"
  oidc_provider_arn     = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  state_bucket_name     = "inferstack-tfstate-123456789012"
  state_key_prefix      = "envs/prod/"
  managed_bucket_prefix = "inferstack-test-models-"
}

run "trust_is_limited_to_the_repository_and_workflow" {
  command = plan

  assert {
    condition = toset(jsondecode(aws_iam_role.plan[0].assume_role_policy).Statement[0].Condition.StringLike["token.actions.githubusercontent.com:sub"]) == toset([
      "repo:acme/inferstack:pull_request:job_workflow_ref:acme/inferstack/.github/workflows/deploy.yml@refs/pull/*/merge",
      "repo:acme/inferstack:ref:refs/heads/main:job_workflow_ref:acme/inferstack/.github/workflows/deploy.yml@refs/heads/main",
    ])
    error_message = "The plan role trusts deploy.yml on pull requests and main of this repository only."
  }

  assert {
    condition     = jsondecode(aws_iam_role.apply[0].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:acme/inferstack:environment:prod:job_workflow_ref:acme/inferstack/.github/workflows/deploy-env.yml@refs/heads/main"]
    error_message = "The apply role trusts only deploy-env.yml from main, in the protected environment: naming the environment from another workflow or branch is not enough."
  }

  assert {
    condition = alltrue([for r in [aws_iam_role.plan[0], aws_iam_role.apply[0]] : (
      jsondecode(r.assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
      && length(regexall("\\*", replace(r.assume_role_policy, "refs/pull/*/merge", ""))) == 0
    )])
    error_message = "Every role checks the audience; the only wildcard is a pull request's number."
  }

  assert {
    condition     = !contains(keys(jsondecode(aws_iam_role.apply[0].assume_role_policy).Statement[0].Condition), "StringLike")
    error_message = "The apply role matches its subject exactly."
  }

  assert {
    condition     = jsondecode(aws_iam_role.plan[0].assume_role_policy).Statement[0].Principal.Federated == "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    error_message = "Roles must trust the GitHub OIDC provider."
  }

  assert {
    condition     = length(aws_iam_openid_connect_provider.github) == 0 && length(aws_iam_role.push) == 0
    error_message = "An environment creates no OIDC provider (one per account: the shared root's) and no push role."
  }
}

run "default_subject_when_the_repository_is_not_customised" {
  command = plan

  variables {
    subject_includes_workflow = false
  }

  assert {
    condition     = jsondecode(aws_iam_role.apply[0].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:acme/inferstack:environment:prod"]
    error_message = "Fallback: GitHub's default subject."
  }
}

run "plan_role_reads_only_what_it_plans" {
  command = plan

  assert {
    condition     = length(aws_iam_role_policy_attachment.apply) == 0 && !strcontains(jsonencode([aws_iam_role_policy.plan[0].policy, aws_iam_role_policy.apply[0].policy]), "ReadOnlyAccess")
    error_message = "No ReadOnlyAccess (it reads every bucket) and no AdministratorAccess."
  }

  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.plan[0].policy).Statement : (
      !contains(flatten([s.Action]), "s3:GetObject") || s.Resource == "arn:aws:s3:::inferstack-tfstate-123456789012/envs/prod/*"
    )])
    error_message = "The plan role reads objects of this environment's state only."
  }

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.plan[0].policy).Statement : s.Resource if s.Sid == "StateLockFile"]) == "arn:aws:s3:::inferstack-tfstate-123456789012/envs/prod/*.tflock"
    error_message = "The plan role may write only this environment's lock file."
  }

  assert {
    condition     = !anytrue([for s in jsondecode(aws_iam_role_policy.plan[0].policy).Statement : contains(flatten([s.Action]), "*") || anytrue([for a in flatten([s.Action]) : endswith(a, ":*")])])
    error_message = "The plan role has no write wildcard."
  }
}

run "apply_role_is_scoped" {
  command = plan

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.apply[0].policy).Statement : s.Resource if s.Sid == "ManagePrefixedIAM"]) == ["arn:aws:iam::123456789012:role/inferstack-test-*", "arn:aws:iam::123456789012:policy/inferstack-test-*", "arn:aws:iam::123456789012:instance-profile/inferstack-test-*"]
    error_message = "IAM changes only to this environment's roles, policies and instance profiles."
  }

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.apply[0].policy).Statement : s.Effect if s.Sid == "DenyChangingCIRoles"]) == "Deny"
    error_message = "The pipeline cannot change its own roles."
  }

  assert {
    condition     = !anytrue([for s in jsondecode(aws_iam_role_policy.apply[0].policy).Statement : s.Effect == "Allow" && contains(flatten([lookup(s, "Action", [])]), "s3:*") && contains(flatten([s.Resource]), "*")])
    error_message = "No blanket S3 access."
  }
}

run "shared_root_creates_provider_and_push_role" {
  command = plan

  variables {
    apply_environment    = null
    create_oidc_provider = true
    oidc_provider_arn    = null
    ecr_repository_arns  = ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack/gateway"]
    ecr_mirror_repository_arns = [
      "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/docker.io/valkey/valkey",
    ]
  }

  assert {
    condition     = length(aws_iam_role.plan) == 0 && length(aws_iam_role.apply) == 0 && length(aws_iam_role.push) == 1
    error_message = "The shared root has the push role only."
  }

  assert {
    condition     = jsondecode(aws_iam_role.push[0].assume_role_policy).Statement[0].Condition.StringEquals["token.actions.githubusercontent.com:sub"] == ["repo:acme/inferstack:ref:refs/heads/main:job_workflow_ref:acme/inferstack/.github/workflows/images.yml@refs/heads/main"]
    error_message = "Pushes only from images.yml on main."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Resource if s.Sid == "PushToOurRepositories"
    ]) == ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack/gateway"]
    error_message = "Pushes are allowed to the listed repositories only."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Resource if s.Sid == "MirrorThirdPartyImages"
      ]) == ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/docker.io/valkey/valkey"] && (
      one([for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Action if s.Sid == "MirrorThirdPartyImages"])
      == one([for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Action if s.Sid == "PushToOurRepositories"])
    )
    error_message = "The mirrors get the push actions, on the listed mirror repositories only."
  }

  assert {
    condition     = toset(flatten([for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Resource if s.Sid != "Login"])) == toset(["arn:aws:ecr:us-east-1:123456789012:repository/inferstack/gateway", "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/mirror/docker.io/valkey/valkey"])
    error_message = "Only GetAuthorizationToken is on \"*\"; every other grant names a repository."
  }

  assert {
    condition     = aws_iam_openid_connect_provider.github[0].url == "https://token.actions.githubusercontent.com" && aws_iam_openid_connect_provider.github[0].client_id_list == toset(["sts.amazonaws.com"])
    error_message = "The OIDC provider must be GitHub's with the STS audience."
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
    oidc_provider_arn = null
  }

  expect_failures = [aws_iam_role.plan]
}

run "requires_the_state_bucket" {
  command = plan

  variables {
    state_bucket_name = null
  }

  expect_failures = [aws_iam_role.plan]
}

run "no_mirror_statement_without_mirrors" {
  command = plan

  variables {
    apply_environment    = null
    create_oidc_provider = true
    oidc_provider_arn    = null
    ecr_repository_arns  = ["arn:aws:ecr:us-east-1:123456789012:repository/inferstack/gateway"]
  }

  assert {
    condition     = [for s in jsondecode(aws_iam_role_policy.push[0].policy).Statement : s.Sid] == ["Login", "PushToOurRepositories"]
    error_message = "IAM rejects a statement without resources: no mirrors, no mirror statement."
  }
}
