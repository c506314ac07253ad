# Read-only access for engine pods (namespace/service account below) through EKS Pod Identity.

locals {
  # Roles that pods assume through EKS Pod Identity (engines and gateways).
  pod_identity_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "pods.eks.amazonaws.com" }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }]
  })
  # Statements of the engines' and the gateways' policies: list below the read prefixes (names, not
  # contents) and decrypt what they may read.
  list_read_prefixes = {
    Sid      = "ListWeights"
    Effect   = "Allow"
    Action   = "s3:ListBucket"
    Resource = aws_s3_bucket.models.arn
    Condition = {
      StringLike = { "s3:prefix" = [for p in var.read_prefixes : "${p}*"] }
    }
  }
  decrypt_models = {
    Sid      = "DecryptWeights"
    Effect   = "Allow"
    Action   = "kms:Decrypt"
    Resource = aws_kms_key.models.arn
  }
}

resource "aws_iam_role" "engine" {
  name               = "${var.cluster_name}-engine"
  assume_role_policy = local.pod_identity_trust
  tags               = var.tags
}

resource "aws_iam_role_policy" "engine_read_models" {
  name = "read-model-weights"
  role = aws_iam_role.engine.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      local.list_read_prefixes,
      {
        Sid      = "ReadWeights"
        Effect   = "Allow"
        Action   = "s3:GetObject"
        Resource = [for p in var.read_prefixes : "${aws_s3_bucket.models.arn}/${p}*"]
      },
      local.decrypt_models,
    ]
  })
}

resource "aws_eks_pod_identity_association" "engine" {
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.engine.arn
  tags            = var.tags
}
