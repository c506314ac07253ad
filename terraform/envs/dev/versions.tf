terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Partial configuration: bucket and region come from backend.hcl (see backend.hcl.example and the
  # bootstrap folder's `backend_config` output). use_lockfile: S3-native locking, no DynamoDB.
  backend "s3" {
    key          = "envs/dev/terraform.tfstate"
    use_lockfile = true
    encrypt      = true
  }
}
