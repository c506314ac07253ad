mock_provider "aws" {
  source = "../tests/mocks"
}

override_resource {
  target          = aws_s3_bucket.state
  override_during = plan
  values = {
    arn    = "arn:aws:s3:::inferstack-tfstate-123456789012-us-east-1"
    id     = "inferstack-tfstate-123456789012-us-east-1"
    bucket = "inferstack-tfstate-123456789012-us-east-1"
  }
}

run "state_bucket_is_private_encrypted_and_versioned" {
  command = plan

  assert {
    condition     = output.state_bucket_name == "inferstack-tfstate-123456789012-us-east-1"
    error_message = "The default name includes account and region."
  }

  assert {
    condition = (aws_s3_bucket_public_access_block.state.block_public_acls
      && aws_s3_bucket_public_access_block.state.block_public_policy
      && aws_s3_bucket_public_access_block.state.ignore_public_acls
    && aws_s3_bucket_public_access_block.state.restrict_public_buckets)
    error_message = "State holds secrets: all public access blocks must be on."
  }

  assert {
    condition     = aws_s3_bucket_versioning.state.versioning_configuration[0].status == "Enabled"
    error_message = "Versioning is the undo button for a corrupted state."
  }

  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.state.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"
    error_message = "State must be encrypted with KMS."
  }

  assert {
    condition     = jsondecode(aws_s3_bucket_policy.state.policy).Statement[0].Condition.Bool["aws:SecureTransport"] == "false" && jsondecode(aws_s3_bucket_policy.state.policy).Statement[0].Effect == "Deny"
    error_message = "Plain-HTTP access must be denied."
  }

  assert {
    condition     = strcontains(output.backend_config, "bucket = \"inferstack-tfstate-123456789012-us-east-1\"")
    error_message = "backend_config must be ready to paste into backend.hcl."
  }
}
