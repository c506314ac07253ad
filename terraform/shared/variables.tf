variable "region" {
  description = "AWS region of the registry (the environments' region: nodes pull through the ECR VPC endpoints)."
  type        = string
  default     = "us-east-1"
}

variable "registry_prefix" {
  description = "Repositories are <registry_prefix>/gateway and <registry_prefix>/engine; also the push role's name prefix. The environments look the repositories up by this prefix."
  type        = string
  default     = "inferstack"
}

variable "mirrored_images" {
  description = "Upstream repositories of the third-party images the clusters run, mirrored as <registry_prefix>/mirror/<upstream>. Must equal images.yml's third-party matrix (tests/delivery/test_third_party_images.py)."
  type        = list(string)
  # Valkey (k8s/components/shared-state) and the engines' adapter-sync sidecar (aws-cli).
  default = ["docker.io/valkey/valkey", "public.ecr.aws/aws-cli/aws-cli"]
}

variable "github_repository" {
  description = "owner/name of the repository whose images.yml pushes images. Null: no OIDC provider, no push role."
  type        = string
  default     = null
}
