terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # Same bucket as the environments (bootstrap output backend_config), its own key.
  backend "s3" {
    key          = "shared/terraform.tfstate"
    use_lockfile = true
    encrypt      = true
  }
}
