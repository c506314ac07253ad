# plan: read-only, for pull requests and the default branch.
resource "aws_iam_role" "plan" {
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
  }
}

resource "aws_iam_role_policy_attachment" "plan_read_only" {
  role       = aws_iam_role.plan.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/ReadOnlyAccess"
}

# ReadOnlyAccess reads state; plan also writes and deletes the S3 lock file (use_lockfile), nothing else.
resource "aws_iam_role_policy" "plan_state_lock" {
  name = "terraform-state-lock"
  role = aws_iam_role.plan.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["s3:PutObject", "s3:DeleteObject"]
      Resource = "arn:${data.aws_partition.current.partition}:s3:::${var.state_bucket_name}/${var.state_key_prefix}*.tflock"
    }]
  })
}

# apply: only jobs running in the protected GitHub environment.
resource "aws_iam_role" "apply" {
  name                 = "${var.name_prefix}-github-apply"
  description          = "terraform apply from ${var.github_repository}, environment ${var.apply_environment}"
  assume_role_policy   = local.trust.apply
  max_session_duration = 3600
  permissions_boundary = var.apply_permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "apply" {
  for_each = toset(var.apply_policy_arns)

  role       = aws_iam_role.apply.name
  policy_arn = each.value
}

# push: build-and-push of the gateway and engine images from the default branch.
resource "aws_iam_role" "push" {
  count = length(var.ecr_repository_arns) > 0 ? 1 : 0

  name                 = "${var.name_prefix}-github-ecr-push"
  description          = "Image pushes from ${var.github_repository} ${var.default_branch}"
  assume_role_policy   = local.trust.push
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "push" {
  count = length(var.ecr_repository_arns) > 0 ? 1 : 0

  name = "ecr-push"
  role = aws_iam_role.push[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "Login" # GetAuthorizationToken cannot be scoped to a repository
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
      {
        Sid    = "PushToOurRepositories"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability",
          "ecr:BatchGetImage",
          "ecr:CompleteLayerUpload",
          "ecr:DescribeImages",
          "ecr:GetDownloadUrlForLayer",
          "ecr:InitiateLayerUpload",
          "ecr:PutImage",
          "ecr:UploadLayerPart",
        ]
        Resource = var.ecr_repository_arns
      },
    ]
  })
}
