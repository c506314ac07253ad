output "ecr_gateway_url" {
  description = "Gateway image repository (both environments)."
  value       = module.registry.repository_urls["gateway"]
}

output "ecr_engine_url" {
  description = "Engine (vLLM) image repository (both environments)."
  value       = module.registry.repository_urls["engine"]
}

output "ecr_mirror_urls" {
  description = "Mirror of each third-party image by upstream repository (images.yml copies the scanned digest there; the release points the manifests at it)."
  value       = module.registry.mirror_repository_urls
}

output "registry_id" {
  description = "Registry (account) ID, for `aws ecr get-login-password`."
  value       = module.registry.registry_id
}

output "ci_push_role_arn" {
  description = "GitHub Actions role that pushes gateway and engine images (images.yml on the default branch). Null without github_repository."
  value       = one(module.ci[*].push_role_arn)
}

output "github_oidc_provider_arn" {
  description = "The account's GitHub OIDC provider; the environments find it by URL."
  value       = one(module.ci[*].oidc_provider_arn)
}
