output "oidc_provider_arn" {
  description = "GitHub OIDC provider ARN."
  value       = local.oidc_provider_arn
}

output "plan_role_arn" {
  description = "Role for `terraform plan` jobs (aws-actions/configure-aws-credentials `role-to-assume`). Null without apply_environment."
  value       = one(aws_iam_role.plan[*].arn)
}

output "apply_role_arn" {
  description = "Role for `terraform apply` jobs running in the protected environment. Null without apply_environment."
  value       = one(aws_iam_role.apply[*].arn)
}

output "push_role_arn" {
  description = "Role for image build-and-push jobs on the default branch. Null without repositories."
  value       = one(aws_iam_role.push[*].arn)
}

output "push_role_policy" {
  description = "The push role's policy JSON (tests of the roots that grant it repositories). Null without repositories."
  value       = one(aws_iam_role_policy.push[*].policy)
}

output "trusted_subjects" {
  description = "OIDC `sub` values each role trusts (documentation and tests)."
  value       = local.subjects
}
