# Model weights in S3: engines stream them at start-up instead of baking them into images or
# pulling from a public hub at run time. Private, encrypted with a customer key, versioned.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  bucket_name = coalesce(var.bucket_name, "${var.cluster_name}-models-${data.aws_caller_identity.current.account_id}")
}

resource "aws_kms_key" "models" {
  description             = "${local.bucket_name}: model weights"
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      # Access is granted through IAM policies in this account (the engine role below).
      Sid       = "AccountAdministration"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })

  tags = var.tags
}

resource "aws_s3_bucket" "models" {
  # Its public access block, versioning, KMS encryption and lifecycle are in module "bucket" below
  # (tested in modules/private-bucket/tests); checkov cannot follow them through envs -> platform -> models.
  #checkov:skip=CKV2_AWS_6:public access block in module.bucket (modules/private-bucket)
  #checkov:skip=CKV_AWS_21:versioning in module.bucket (modules/private-bucket)
  #checkov:skip=CKV_AWS_145:KMS default encryption in module.bucket (modules/private-bucket)
  #checkov:skip=CKV2_AWS_61:lifecycle configuration in module.bucket (modules/private-bucket)
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

# Public access blocked, ACLs off, versioning, encryption with the key above, old versions expired,
# TLS only.
module "bucket" {
  source = "../private-bucket"

  bucket                         = aws_s3_bucket.models.id
  kms_key_arn                    = aws_kms_key.models.arn
  noncurrent_version_expiry_days = var.noncurrent_version_expiry_days
}
