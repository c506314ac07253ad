# GitHub Actions -> AWS without stored keys: workflows exchange their OIDC token for short-lived
# credentials. Each role trusts exact `sub` claims of one repository: no wildcards, so a fork or
# another repository in the organisation cannot assume them.

data "aws_partition" "current" {}

locals {
  issuer            = "token.actions.githubusercontent.com"
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : var.oidc_provider_arn
  repo_sub          = "repo:${var.github_repository}"

  subjects = {
    plan  = ["${local.repo_sub}:pull_request", "${local.repo_sub}:ref:refs/heads/${var.default_branch}"]
    apply = ["${local.repo_sub}:environment:${var.apply_environment}"]
    push  = ["${local.repo_sub}:ref:refs/heads/${var.default_branch}"]
  }
}

resource "aws_iam_openid_connect_provider" "github" {
  count = var.create_oidc_provider ? 1 : 0

  url            = "https://${local.issuer}"
  client_id_list = ["sts.amazonaws.com"]
  # No thumbprint_list: IAM trusts GitHub's certificate through its own CA store.
  tags = var.tags
}

locals {
  trust = { for role, subs in local.subjects : role => jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = local.oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${local.issuer}:aud" = "sts.amazonaws.com"
          "${local.issuer}:sub" = subs
        }
      }
    }]
  }) }
}
