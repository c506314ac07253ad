output "oidc_provider_arn" {
  description = "GitHub OIDC provider ARN (pass it to the other environment of the same account)."
  value       = local.oidc_provider_arn
}

output "plan_role_arn" {
  description = "Role for `terraform plan` jobs (aws-actions/configure-aws-credentials `role-to-assume`)."
  value       = aws_iam_role.plan.arn
}

output "apply_role_arn" {
  description = "Role for `terraform apply` jobs running in the protected environment."
  value       = aws_iam_role.apply.arn
}

output "push_role_arn" {
  description = "Role for image build-and-push jobs on the default branch. Null without repositories."
  value       = length(aws_iam_role.push) > 0 ? aws_iam_role.push[0].arn : null
}
