output "bucket_name" {
  description = "Model-weights bucket. Upload with `aws s3 sync ./model s3://<bucket>/models/<name>/`."
  value       = aws_s3_bucket.models.bucket
}

output "bucket_arn" {
  description = "ARN of the model-weights bucket."
  value       = aws_s3_bucket.models.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the weights (uploaders need kms:GenerateDataKey on it)."
  value       = aws_kms_key.models.arn
}

output "engine_role_arn" {
  description = "IAM role engine pods get through Pod Identity (read-only on the bucket)."
  value       = aws_iam_role.engine.arn
}

output "engine_service_account" {
  description = "namespace/name of the service account bound to engine_role_arn."
  value       = "${var.namespace}/${var.service_account}"
}

output "gateway_role_arn" {
  description = "IAM role gateway pods get through Pod Identity (read-only on the tokenizer files)."
  value       = aws_iam_role.gateway.arn
}

output "gateway_service_account" {
  description = "namespace/name of the service account bound to gateway_role_arn."
  value       = "${var.namespace}/${var.gateway_service_account}"
}
