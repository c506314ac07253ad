mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  bucket                         = "inferstack-test-bucket"
  noncurrent_version_expiry_days = 7
}

run "private_encrypted_versioned_tls_only" {
  command = plan

  assert {
    condition = (aws_s3_bucket_public_access_block.this.block_public_acls
      && aws_s3_bucket_public_access_block.this.block_public_policy
      && aws_s3_bucket_public_access_block.this.ignore_public_acls
    && aws_s3_bucket_public_access_block.this.restrict_public_buckets)
    error_message = "All public access blocks must be on."
  }

  assert {
    condition     = aws_s3_bucket_ownership_controls.this.rule[0].object_ownership == "BucketOwnerEnforced"
    error_message = "ACLs off: access is decided by IAM and the bucket policy."
  }

  assert {
    condition     = aws_s3_bucket_versioning.this.versioning_configuration[0].status == "Enabled"
    error_message = "Versioning is the undo button."
  }

  assert {
    condition = (one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"
    && one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == null)
    error_message = "KMS encryption, with the AWS-managed key when no key is given."
  }

  assert {
    condition = jsondecode(output.policy).Statement == [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = ["arn:aws:s3:::inferstack-test-bucket", "arn:aws:s3:::inferstack-test-bucket/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
    error_message = "The only statement denies plain HTTP on the bucket and its objects."
  }

  assert {
    condition     = [for r in aws_s3_bucket_lifecycle_configuration.this.rule : r.id] == ["expire-noncurrent-versions", "abort-incomplete-uploads"]
    error_message = "Old versions expire and incomplete uploads are aborted."
  }
}

run "customer_key" {
  command = plan

  variables {
    kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
  }

  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    error_message = "A given key encrypts by default."
  }
}

run "an_undo_window_is_required" {
  command = plan

  variables {
    noncurrent_version_expiry_days = 0
  }

  expect_failures = [var.noncurrent_version_expiry_days]
}
