# The S3 bucket that holds every environment's Terraform state. Applied once per account with local
# state (this folder cannot store its state in the bucket it creates); keep terraform.tfstate from
# this folder somewhere safe, or import the bucket if you lose it.
# Locking uses S3's native lock file (backend `use_lockfile = true`): no DynamoDB table.

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

data "aws_caller_identity" "current" {}

locals {
  bucket_name = coalesce(var.bucket_name, "inferstack-tfstate-${data.aws_caller_identity.current.account_id}-${var.region}")
}

resource "aws_s3_bucket" "state" {
  bucket = local.bucket_name

  # Losing state means losing track of GPU clusters that keep billing: refuse to destroy.
  lifecycle {
    prevent_destroy = true
  }
}

# Public access blocked, ACLs off, versioning, KMS encryption, old versions expired, TLS only.
module "bucket" {
  source = "../modules/private-bucket"

  bucket                         = aws_s3_bucket.state.id
  noncurrent_version_expiry_days = var.noncurrent_version_expiry_days
}
