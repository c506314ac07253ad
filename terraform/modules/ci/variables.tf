variable "name_prefix" {
  description = "Prefix for role names, for example inferstack-prod. The apply role may manage IAM roles and policies with this prefix only."
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

variable "workflows" {
  description = "Workflow file of each role (the job_workflow_ref in the subject): plan = the pull-request plan, apply = the environment deploy, push = the image build."
  type = object({
    plan  = optional(string, ".github/workflows/deploy.yml")
    apply = optional(string, ".github/workflows/deploy-env.yml")
    push  = optional(string, ".github/workflows/images.yml")
  })
  default = {}

  validation {
    condition     = alltrue([for p in values(var.workflows) : can(regex("^\\.github/workflows/[A-Za-z0-9_.-]+\\.ya?ml$", p))])
    error_message = "workflows must be paths like .github/workflows/deploy.yml."
  }
}

variable "subject_includes_workflow" {
  description = "The repository's OIDC subject template includes job_workflow_ref (see main.tf for the one-time `gh api` call). False: GitHub's default subject, which any workflow of the repository can obtain."
  type        = bool
  default     = true
}

variable "apply_environment" {
  description = "GitHub environment whose jobs may plan and apply (plan + apply roles). Null: no plan/apply roles (the account-wide `shared` root, which only has the push role). Protect it in GitHub (required reviewers, deployment branch = default_branch)."
  type        = string
  default     = null

  validation {
    condition     = var.apply_environment == null || can(regex("^[A-Za-z0-9_.-]+$", var.apply_environment))
    error_message = "apply_environment must be a plain environment name."
  }
}

variable "create_oidc_provider" {
  description = "Create the account's GitHub OIDC provider. There is one per account: the `shared` root creates it; environments look it up and pass oidc_provider_arn."
  type        = bool
  default     = false
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
  description = "Terraform state bucket (from terraform/bootstrap). Plan reads this environment's state and writes its lock file; apply also writes the state. Required with apply_environment."
  type        = string
  default     = null
}

variable "state_key_prefix" {
  description = "Key prefix of this environment's state in the bucket, for example envs/prod/."
  type        = string
  default     = null
}

variable "managed_bucket_prefix" {
  description = "Prefix of the S3 buckets the environment manages (the models bucket: <cluster>-models-<account>): the only buckets whose configuration plan reads and apply changes."
  type        = string
  default     = null
}

variable "apply_policy_arns" {
  description = "Extra policies for the apply role, on top of the scoped `terraform-apply` policy (apply.tf). Leave empty unless a stack grows a new service."
  type        = list(string)
  default     = []
}

variable "apply_permissions_boundary_arn" {
  description = "Optional permissions boundary for the apply role."
  type        = string
  default     = null
}

variable "ecr_repository_arns" {
  description = "ECR repositories the image-push role may push to. Empty: no push role (environments; the shared root owns it)."
  type        = list(string)
  default     = []
}

variable "ecr_mirror_repository_arns" {
  description = "ECR mirrors of third-party images the push role may copy into (the registry module's mirror_repository_arns); a statement of their own in the push policy."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
