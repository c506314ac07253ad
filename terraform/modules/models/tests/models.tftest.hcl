mock_provider "aws" {
  source = "../../tests/mocks"
}

override_resource {
  target          = aws_s3_bucket.models
  override_during = plan
  values = {
    arn = "arn:aws:s3:::inferstack-test-models-123456789012"
    id  = "inferstack-test-models-123456789012"
  }
}

override_resource {
  target          = aws_kms_key.models
  override_during = plan
  values = {
    arn = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
  }
}

override_resource {
  target          = aws_iam_role.engine
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:role/inferstack-test-engine"
  }
}

variables {
  cluster_name = "inferstack-test"
}

run "bucket_is_private_encrypted_and_versioned" {
  command = plan

  assert {
    condition     = aws_s3_bucket.models.bucket == "inferstack-test-models-123456789012"
    error_message = "The default bucket name includes the account ID to be globally unique."
  }

  assert {
    condition     = module.bucket.bucket == "inferstack-test-models-123456789012"
    error_message = "modules/private-bucket protects this bucket (public access blocked, versioning, encryption, TLS only)."
  }

  assert {
    condition     = aws_kms_key.models.enable_key_rotation
    error_message = "KMS key rotation must be on."
  }

  assert {
    condition     = [for s in jsondecode(module.bucket.policy).Statement : s.Effect] == ["Deny"]
    error_message = "The bucket policy must grant nothing: access comes from IAM roles only."
  }

  assert {
    condition     = aws_s3_bucket.models.force_destroy == false
    error_message = "A bucket holding weights must not be destroyable by default."
  }
}

run "engine_role_is_read_only_through_pod_identity" {
  command = plan

  assert {
    condition = (aws_eks_pod_identity_association.engine.namespace == "inferstack"
    && aws_eks_pod_identity_association.engine.service_account == "vllm-engine")
    error_message = "The engine role is bound to inferstack/vllm-engine (the name the k8s overlay uses)."
  }

  assert {
    condition = toset(flatten([for s in jsondecode(aws_iam_role_policy.engine_read_models.policy).Statement : s.Action])) == toset(
    ["s3:ListBucket", "s3:GetObject", "kms:Decrypt"])
    error_message = "Engines may only list, read and decrypt: no writes."
  }

  assert {
    condition     = output.engine_role_arn == "arn:aws:iam::123456789012:role/inferstack-test-engine" && output.engine_service_account == "inferstack/vllm-engine"
    error_message = "The overlay needs the engine role and its service account."
  }
}

run "read_access_can_be_limited_to_prefixes" {
  command = plan

  variables {
    read_prefixes = ["models/"]
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_role_policy.engine_read_models.policy).Statement : s if s.Sid == "ReadWeights"
    ]).Resource == ["arn:aws:s3:::inferstack-test-models-123456789012/models/*"]
    error_message = "GetObject must be limited to the configured prefixes."
  }
}

run "rejects_invalid_bucket_name" {
  command = plan

  variables {
    bucket_name = "Models_Bucket"
  }

  expect_failures = [var.bucket_name]
}
