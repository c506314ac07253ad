terraform {
  # 1.10: S3 backend native locking (use_lockfile); 1.7: mock providers in `terraform test`.
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}
