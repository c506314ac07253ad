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

override_resource {
  target          = aws_iam_role.gateway
  override_during = plan
  values = {
    arn = "arn:aws:iam::123456789012:role/inferstack-test-gateway"
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

run "gateway_role_reads_only_tokenizer_files" {
  command = plan

  variables {
    read_prefixes = ["models/", "adapters/"]
  }

  assert {
    condition = (aws_eks_pod_identity_association.gateway.namespace == "inferstack"
    && aws_eks_pod_identity_association.gateway.service_account == "inferstack-gateway")
    error_message = "The gateway role is bound to inferstack/inferstack-gateway (k8s/base/gateway)."
  }

  assert {
    condition = toset(flatten([for s in jsondecode(aws_iam_role_policy.gateway_read_tokenizers.policy).Statement : s.Action])) == toset(
    ["s3:ListBucket", "s3:GetObject", "kms:Decrypt"])
    error_message = "Gateways may only list, read and decrypt: no writes."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_role_policy.gateway_read_tokenizers.policy).Statement : s if s.Sid == "ReadTokenizerFiles"
      ]).Resource == flatten([for p in ["models/", "adapters/"] : [for f in var.tokenizer_files :
    "arn:aws:s3:::inferstack-test-models-123456789012/${p}*/${f}"]])
    error_message = "GetObject must name the tokenizer files below the read prefixes, never a whole prefix (the weights)."
  }

  assert {
    condition     = output.gateway_role_arn == "arn:aws:iam::123456789012:role/inferstack-test-gateway" && output.gateway_service_account == "inferstack/inferstack-gateway"
    error_message = "The gateway role and its service account are outputs."
  }
}

run "rejects_a_wildcard_tokenizer_file" {
  command = plan

  variables {
    tokenizer_files = ["*"]
  }

  expect_failures = [var.tokenizer_files]
}
