output "repository_urls" {
  description = "Repository URL by short name (`<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<name>`)."
  value       = { for k, r in aws_ecr_repository.this : k => r.repository_url }
}

output "repository_arns" {
  description = "Repository ARN by short name (for push policies)."
  value       = { for k, r in aws_ecr_repository.this : k => r.arn }
}

output "registry_id" {
  description = "Registry (account) ID, for `aws ecr get-login-password`."
  value       = values(aws_ecr_repository.this)[0].registry_id # one account, one registry
}
