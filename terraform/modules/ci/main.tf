# GitHub Actions -> AWS without stored keys: workflows exchange their OIDC token for short-lived
# credentials. Each role trusts exact `sub` claims of one repository and one workflow file: no
# wildcards except a pull request's number, so a fork, another repository in the organisation or
# another workflow of this repository (a branch that edits a workflow to name the environment)
# cannot assume them.
#
# AWS evaluates only the standard claims (`sub`, `aud`): "support for custom claims for OIDC is
# unavailable in AWS" (GitHub's AWS OIDC guide). The workflow is therefore put INTO `sub` with
# GitHub's subject customization, once per repository:
#   gh api -X PUT repos/OWNER/REPO/actions/oidc/customization/sub \
#     -F use_default=false -f 'include_claim_keys[]=repo' -f 'include_claim_keys[]=context' \
#     -f 'include_claim_keys[]=job_workflow_ref'
# which gives `repo:OWNER/REPO:environment:prod:job_workflow_ref:OWNER/REPO/.github/workflows/deploy-env.yml@refs/heads/main`.
# subject_includes_workflow = false falls back to GitHub's default subject (repository + context).

data "aws_partition" "current" {}

locals {
  partition         = data.aws_partition.current.partition
  issuer            = "token.actions.githubusercontent.com"
  oidc_provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.github[0].arn : var.oidc_provider_arn
  repo_sub          = "repo:${var.github_repository}"
  main_ref          = "refs/heads/${var.default_branch}"

  # job_workflow_ref of a job: <owner/repo>/<workflow path>@<ref>. For a reusable workflow called
  # from deploy.yml it is the called file (deploy-env.yml, images.yml), at the caller's ref.
  workflow_ref = { for role, path in var.workflows : role => "${var.github_repository}/${path}" }
  with_workflow = {
    plan = [
      "${local.repo_sub}:pull_request:job_workflow_ref:${local.workflow_ref.plan}@refs/pull/*/merge",
      "${local.repo_sub}:ref:${local.main_ref}:job_workflow_ref:${local.workflow_ref.plan}@${local.main_ref}",
    ]
    apply = ["${local.repo_sub}:environment:${coalesce(var.apply_environment, "-")}:job_workflow_ref:${local.workflow_ref.apply}@${local.main_ref}"]
    push  = ["${local.repo_sub}:ref:${local.main_ref}:job_workflow_ref:${local.workflow_ref.push}@${local.main_ref}"]
  }
  default_subject = {
    plan  = ["${local.repo_sub}:pull_request", "${local.repo_sub}:ref:${local.main_ref}"]
    apply = ["${local.repo_sub}:environment:${coalesce(var.apply_environment, "-")}"]
    push  = ["${local.repo_sub}:ref:${local.main_ref}"]
  }
  subjects = var.subject_includes_workflow ? local.with_workflow : local.default_subject
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
      # StringLike only where a subject holds the pull request number; exact matches elsewhere.
      Condition = merge(
        { StringEquals = merge(
          { "${local.issuer}:aud" = "sts.amazonaws.com" },
          anytrue([for s in subs : strcontains(s, "*")]) ? {} : { "${local.issuer}:sub" = subs },
        ) },
        anytrue([for s in subs : strcontains(s, "*")]) ? { StringLike = { "${local.issuer}:sub" = subs } } : {},
      )
    }]
  }) }
}
