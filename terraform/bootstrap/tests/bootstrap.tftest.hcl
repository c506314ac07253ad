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
    condition     = module.bucket.bucket == "inferstack-tfstate-123456789012-us-east-1"
    error_message = "modules/private-bucket protects the state bucket (public access blocked, versioning, KMS, TLS only)."
  }

  assert {
    condition     = jsondecode(module.bucket.policy).Statement[0].Condition.Bool["aws:SecureTransport"] == "false" && jsondecode(module.bucket.policy).Statement[0].Effect == "Deny"
    error_message = "Plain-HTTP access must be denied."
  }

  assert {
    condition     = strcontains(output.backend_config, "bucket = \"inferstack-tfstate-123456789012-us-east-1\"")
    error_message = "backend_config must be ready to paste into backend.hcl."
  }
}
