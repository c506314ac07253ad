output "repository_urls" {
  description = "Our images' repository URL by short name (`<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<name>`)."
  value       = { for k in var.repositories : k => aws_ecr_repository.this[k].repository_url }
}

output "repository_arns" {
  description = "Our images' repository ARN by short name (for push policies)."
  value       = { for k in var.repositories : k => aws_ecr_repository.this[k].arn }
}

output "mirror_repository_urls" {
  description = "Mirror repository URL by upstream repository (`docker.io/valkey/valkey` -> `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/mirror/docker.io/valkey/valkey`)."
  value       = { for m in var.mirrors : m => aws_ecr_repository.this["mirror/${m}"].repository_url }
}

output "mirror_repository_arns" {
  description = "Mirror repository ARN by upstream repository (for the push policy)."
  value       = { for m in var.mirrors : m => aws_ecr_repository.this["mirror/${m}"].arn }
}

output "registry_id" {
  description = "Registry (account) ID, for `aws ecr get-login-password`."
  value       = values(aws_ecr_repository.this)[0].registry_id # one account, one registry
}
