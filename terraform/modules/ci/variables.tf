variable "name_prefix" {
  description = "Prefix for role names, for example inferstack-prod."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,40}$", var.name_prefix))
    error_message = "name_prefix must be at most 41 letters, digits or dashes, starting with a letter."
  }
}

variable "github_repository" {
  description = "The only repository whose workflows may assume these roles, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository)) && !strcontains(var.github_repository, "*")
    error_message = "github_repository must be owner/name, without wildcards."
  }
}

variable "default_branch" {
  description = "Branch whose pushes may plan and push images (pull requests may plan too)."
  type        = string
  default     = "main"

  validation {
    condition     = length(var.default_branch) > 0 && !strcontains(var.default_branch, "*")
    error_message = "default_branch must be a branch name without wildcards."
  }
}

variable "apply_environment" {
  description = "GitHub environment whose jobs may apply. Protect it in GitHub (required reviewers, deployment branch = default_branch): a job that names an environment gets `sub = repo:<repo>:environment:<name>`."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.apply_environment))
    error_message = "apply_environment must be a plain environment name."
  }
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider. There can be only one per account: set false in the second environment of an account and pass oidc_provider_arn."
  type        = bool
  default     = true
}

variable "oidc_provider_arn" {
  description = "Existing GitHub OIDC provider ARN, used when create_oidc_provider is false."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_provider_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token.actions.githubusercontent.com$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be the ARN of the token.actions.githubusercontent.com provider."
  }
}

variable "state_bucket_name" {
  description = "Terraform state bucket (from terraform/bootstrap). The plan role may read state and write only the lock file."
  type        = string
}

variable "state_key_prefix" {
  description = "Key prefix of this environment's state in the bucket, for example envs/prod/."
  type        = string
}

variable "apply_policy_arns" {
  description = "Policies of the apply role. It creates IAM roles, KMS keys and clusters, so it is broad by nature; narrow it with apply_permissions_boundary_arn."
  type        = list(string)
  default     = ["arn:aws:iam::aws:policy/AdministratorAccess"]
}

variable "apply_permissions_boundary_arn" {
  description = "Optional permissions boundary for the apply role."
  type        = string
  default     = null
}

variable "ecr_repository_arns" {
  description = "ECR repositories the image-push role may push to. Empty: no push role."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
