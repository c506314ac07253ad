# Three roles: plan (pull requests and the default branch; reads only what the stacks manage),
# apply (jobs of deploy-env.yml in the protected environment; a scoped policy, policies.tf),
# push (images.yml on the default branch; the account's ECR repositories only).

locals {
  environment_roles = var.apply_environment == null ? 0 : 1
}

resource "aws_iam_role" "plan" {
  count = local.environment_roles

  name                 = "${var.name_prefix}-github-plan"
  description          = "terraform plan from ${var.github_repository} (pull requests, ${var.default_branch})"
  assume_role_policy   = local.trust.plan
  max_session_duration = 3600
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = local.oidc_provider_arn != null
      error_message = "Set oidc_provider_arn when create_oidc_provider is false."
    }
    precondition {
      condition     = var.state_bucket_name != null && var.state_key_prefix != null && var.managed_bucket_prefix != null
      error_message = "Set state_bucket_name, state_key_prefix and managed_bucket_prefix with apply_environment."
    }
  }
}

# No ReadOnlyAccess: it reads every object of every bucket (weights, other environments' state).
resource "aws_iam_role_policy" "plan" {
  count = local.environment_roles

  name   = "terraform-plan"
  role   = aws_iam_role.plan[0].id
  policy = jsonencode(local.plan_policy)
}

resource "aws_iam_role" "apply" {
  count = local.environment_roles

  name                 = "${var.name_prefix}-github-apply"
  description          = "terraform apply from ${var.github_repository} ${var.workflows.apply}, environment ${var.apply_environment}"
  assume_role_policy   = local.trust.apply
  max_session_duration = 3600
  permissions_boundary = var.apply_permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy" "apply" {
  count = local.environment_roles

  name   = "terraform-apply"
  role   = aws_iam_role.apply[0].id
  policy = jsonencode(local.apply_policy)
}

resource "aws_iam_role_policy_attachment" "apply" {
  for_each = local.environment_roles == 1 ? toset(var.apply_policy_arns) : toset([])

  role       = aws_iam_role.apply[0].name
  policy_arn = each.value
}

resource "aws_iam_role" "push" {
  count = length(var.ecr_repository_arns) > 0 ? 1 : 0

  name                 = "${var.name_prefix}-github-ecr-push"
  description          = "Image pushes from ${var.github_repository} ${var.workflows.push} on ${var.default_branch}"
  assume_role_policy   = local.trust.push
  max_session_duration = 3600
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = local.oidc_provider_arn != null
      error_message = "Set oidc_provider_arn when create_oidc_provider is false."
    }
  }
}

locals {
  # What a push needs (skopeo's copy into a mirror and cosign's signature on it need the same);
  # DescribeImages / BatchGetImage let a re-run find the tag already pushed with the same digest and
  # skip the push (immutable tags reject a second PutImage of a tag).
  ecr_push_actions = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImages",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
  ]
}

resource "aws_iam_role_policy" "push" {
  count = length(var.ecr_repository_arns) > 0 ? 1 : 0

  name = "ecr-push"
  role = aws_iam_role.push[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "Login" # GetAuthorizationToken cannot be scoped to a repository
          Effect   = "Allow"
          Action   = "ecr:GetAuthorizationToken"
          Resource = "*"
        },
        {
          Sid      = "PushToOurRepositories"
          Effect   = "Allow"
          Action   = local.ecr_push_actions
          Resource = var.ecr_repository_arns
        },
      ],
      # The third-party images' mirrors: images.yml copies each scanned digest into its own one.
      # Listed by ARN, no wildcard: the role cannot write a mirror Terraform did not declare.
      length(var.ecr_mirror_repository_arns) == 0 ? [] : [{
        Sid      = "MirrorThirdPartyImages"
        Effect   = "Allow"
        Action   = local.ecr_push_actions
        Resource = var.ecr_mirror_repository_arns
      }],
    )
  })
}
