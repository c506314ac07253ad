output "state_bucket_name" {
  description = "The state bucket."
  value       = aws_s3_bucket.state.bucket
}

output "backend_config" {
  description = "Contents for envs/<env>/backend.hcl (then `terraform init -backend-config=backend.hcl`)."
  value       = <<-EOT
    bucket = "${aws_s3_bucket.state.bucket}"
    region = "${var.region}"
  EOT
}
