# Account-wide pieces both environments use, applied once per account after bootstrap (by a person,
# like bootstrap): the GitHub OIDC provider (IAM allows one per URL per account, so dev and prod in
# one account would collide if each created it), ONE set of ECR repositories, and ONE image-push
# role. An image is built and pushed once; dev deploys its digest; prod deploys the same digest once
# dev passed: promotion is by digest, nothing is rebuilt or copied. The third-party images the
# clusters run are mirrored here too (<prefix>/mirror/<upstream>): images.yml copies the digest it
# scanned, and the release points the manifests at that copy.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      project    = "inferstack"
      managed-by = "terraform"
      scope      = "shared"
    }
  }
}

module "registry" {
  source = "../modules/registry"

  name_prefix        = var.registry_prefix
  mirrors            = var.mirrored_images
  keep_tagged_images = 50 # both environments roll back within this window
}

module "ci" {
  source = "../modules/ci"
  count  = var.github_repository == null ? 0 : 1

  name_prefix          = var.registry_prefix
  github_repository    = var.github_repository
  create_oidc_provider = true
  ecr_repository_arns  = values(module.registry.repository_arns)
  # Exactly the mirrors declared above (shared/tests checks the policy names each, nothing more).
  ecr_mirror_repository_arns = values(module.registry.mirror_repository_arns)
}
