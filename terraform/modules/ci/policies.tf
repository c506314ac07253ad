# What the plan and apply roles may do: the services the environment stacks manage (network, eks,
# karpenter, models, ci, edge, cache), nothing else. Not airtight (ec2:* and kms:* are account-wide in the
# region), but no AdministratorAccess: no S3 object outside this environment's state and buckets, no
# IAM outside the name prefix, and the CI roles cannot change themselves or grant administrator.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  iam_arn    = "arn:${local.partition}:iam::${local.account_id}"
  s3_arn     = "arn:${local.partition}:s3:::"

  state_bucket_arn  = "${local.s3_arn}${coalesce(var.state_bucket_name, "-")}"
  state_objects_arn = "${local.state_bucket_arn}/${coalesce(var.state_key_prefix, "-")}*"
  managed_buckets   = ["${local.s3_arn}${coalesce(var.managed_bucket_prefix, "-")}*"]
  ci_roles          = "${local.iam_arn}:role/${var.name_prefix}-github-*"
  in_region         = { StringEquals = { "aws:RequestedRegion" = local.region } }

  state_read = [
    {
      Sid       = "ListThisState"
      Effect    = "Allow"
      Action    = "s3:ListBucket"
      Resource  = local.state_bucket_arn
      Condition = { StringLike = { "s3:prefix" = ["${coalesce(var.state_key_prefix, "-")}*"] } }
    },
    {
      Sid      = "ReadThisState"
      Effect   = "Allow"
      Action   = "s3:GetObject"
      Resource = local.state_objects_arn
    },
  ]

  plan_policy = {
    Version = "2012-10-17"
    Statement = concat(local.state_read, [
      {
        # use_lockfile: plan writes and deletes <key>.tflock, nothing else in the bucket.
        Sid      = "StateLockFile"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:DeleteObject"]
        Resource = "${local.state_bucket_arn}/${coalesce(var.state_key_prefix, "-")}*.tflock"
      },
      {
        Sid    = "ReadStackServices"
        Effect = "Allow"
        Action = [
          "acm:DescribeCertificate", "acm:ListTagsForCertificate",
          "ec2:Describe*", "ec2:GetSecurityGroupsForVpc",
          "ecr:DescribeRepositories", "ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy", "ecr:ListTagsForResource",
          "eks:Describe*", "eks:List*",
          "elasticache:Describe*", "elasticache:ListTagsForResource",
          "events:DescribeRule", "events:ListTagsForResource", "events:ListTargetsByRule",
          "iam:GetInstanceProfile", "iam:GetOpenIDConnectProvider", "iam:GetPolicy", "iam:GetPolicyVersion",
          "iam:GetRole", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
          "iam:ListOpenIDConnectProviders", "iam:ListPolicyVersions", "iam:ListRolePolicies", "iam:ListRoleTags",
          "kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases", "kms:ListResourceTags",
          "logs:DescribeLogGroups", "logs:ListTagsForResource", "logs:ListTagsLogGroup",
          "route53:GetChange", "route53:GetHostedZone", "route53:ListResourceRecordSets",
          "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ListQueueTags",
        ]
        Resource = "*"
      },
      {
        # Bucket configuration only (no s3:GetObject): the weights are not the plan's business.
        Sid      = "ReadManagedBucketConfiguration"
        Effect   = "Allow"
        Action   = ["s3:GetBucket*", "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration", "s3:GetAccelerateConfiguration", "s3:GetReplicationConfiguration", "s3:ListBucket"]
        Resource = local.managed_buckets
      },
    ])
  }

  apply_policy = {
    Version = "2012-10-17"
    Statement = concat(local.state_read, [
      {
        Sid      = "WriteThisState"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:DeleteObject"]
        Resource = local.state_objects_arn
      },
      {
        Sid       = "ManageStackServices"
        Effect    = "Allow"
        Action    = ["acm:*", "ec2:*", "eks:*", "elasticache:*", "events:*", "kms:*", "logs:*", "sqs:*", "ssm:GetParameter", "ssm:GetParameters"]
        Resource  = "*"
        Condition = local.in_region
      },
      {
        # Route 53 is global (no region condition): the certificate's DNS validation records only.
        Sid      = "CertificateValidationRecords"
        Effect   = "Allow"
        Action   = ["route53:ChangeResourceRecordSets", "route53:GetChange", "route53:GetHostedZone", "route53:ListResourceRecordSets"]
        Resource = ["arn:${local.partition}:route53:::hostedzone/*", "arn:${local.partition}:route53:::change/*"]
      },
      {
        Sid      = "ReadSharedRegistry"
        Effect   = "Allow"
        Action   = ["ecr:DescribeRepositories", "ecr:ListTagsForResource", "ecr:GetLifecyclePolicy"]
        Resource = "*"
      },
      {
        Sid      = "ReadIAM"
        Effect   = "Allow"
        Action   = ["iam:Get*", "iam:List*"]
        Resource = "*"
      },
      {
        # Roles, policies and instance profiles named after this environment only.
        Sid    = "ManagePrefixedIAM"
        Effect = "Allow"
        Action = ["iam:*"]
        Resource = [
          "${local.iam_arn}:role/${var.name_prefix}-*",
          "${local.iam_arn}:policy/${var.name_prefix}-*",
          "${local.iam_arn}:instance-profile/${var.name_prefix}-*",
        ]
      },
      {
        Sid       = "ServiceLinkedRoles"
        Effect    = "Allow"
        Action    = "iam:CreateServiceLinkedRole"
        Resource  = "*"
        Condition = { StringEquals = { "iam:AWSServiceName" = ["eks.amazonaws.com", "eks-nodegroup.amazonaws.com", "elasticache.amazonaws.com", "autoscaling.amazonaws.com", "spot.amazonaws.com", "elasticloadbalancing.amazonaws.com"] } }
      },
      {
        Sid      = "ManageEnvironmentBuckets"
        Effect   = "Allow"
        Action   = "s3:*"
        Resource = concat(local.managed_buckets, [for b in local.managed_buckets : "${b}/*"])
      },
      {
        # The pipeline must not widen its own access: changes to the CI roles are applied by a human.
        Sid       = "DenyChangingCIRoles"
        Effect    = "Deny"
        NotAction = ["iam:Get*", "iam:List*", "iam:PassRole"]
        Resource  = local.ci_roles
      },
      {
        Sid       = "DenyGrantingAdministrator"
        Effect    = "Deny"
        Action    = ["iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy"]
        Resource  = "*"
        Condition = { ArnLike = { "iam:PolicyARN" = ["arn:${local.partition}:iam::aws:policy/AdministratorAccess", "arn:${local.partition}:iam::aws:policy/IAMFullAccess", "arn:${local.partition}:iam::aws:policy/PowerUserAccess"] } }
      },
    ])
  }
}
