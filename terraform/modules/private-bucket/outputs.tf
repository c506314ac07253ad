output "bucket" {
  description = "The bucket's name, once every protection is in place (depend on it rather than on the bucket)."
  value       = var.bucket

  depends_on = [
    aws_s3_bucket_public_access_block.this,
    aws_s3_bucket_ownership_controls.this,
    aws_s3_bucket_versioning.this,
    aws_s3_bucket_server_side_encryption_configuration.this,
    aws_s3_bucket_lifecycle_configuration.this,
    aws_s3_bucket_policy.this,
  ]
}

output "policy" {
  description = "The bucket policy (plain-HTTP access denied)."
  value       = local.policy
}
