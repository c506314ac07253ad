# Run by terraform/tests/test_terraform.py::test_pipeline_plan with EXACTLY the TF_VAR_* variables
# the workflows set (read from .github/workflows) plus the committed terraform.tfvars; no variables
# here. Kept out of tests/ because it means nothing without the workflows' environment.

mock_provider "aws" {
  source = "../../tests/mocks"
}

# Role ARNs are only known after apply: give the apply role one, so the run can see the roles exist.
override_resource {
  target          = module.platform.module.ci[0].aws_iam_role.apply
  override_during = plan
  values          = { arn = "arn:aws:iam::123456789012:role/inferstack-ci-apply" }
}

run "plan_with_the_pipeline_variables" {
  command = plan

  assert {
    condition     = output.ci_apply_role_arn != null
    error_message = "The pipeline sets github_repository: the CI roles are part of the plan."
  }

  assert {
    condition     = !contains(var.public_access_cidrs, "") && length(var.public_access_cidrs) > 0
    error_message = "public_access_cidrs comes from terraform.tfvars."
  }
}
