# dev: cheapest shape that still behaves like prod. One NAT gateway, EKS Auto Mode (no node group to
# pay for while idle), GPUs only while an engine is scheduled; the weights bucket can be destroyed.
# Everything is wired in modules/platform; this call is dev's choices.

locals {
  environment = "dev"

  tags = {
    project     = "inferstack"
    environment = local.environment
    managed-by  = "terraform"
  }
}

module "platform" {
  source = "../../modules/platform"

  environment        = local.environment
  name               = "inferstack-dev"
  kubernetes_version = "1.35"
  compute_mode       = "auto"
  karpenter_version  = "1.14.1" # used only if compute_mode is switched to karpenter

  vpc_cidr           = "10.10.0.0/16"
  availability_zones = var.availability_zones
  single_nat_gateway = true # saves 2 x $0.045/h; an AZ outage cuts dev egress, which is acceptable

  public_access_cidrs  = var.public_access_cidrs
  admin_principal_arns = var.admin_principal_arns
  log_retention_days   = 14
  system_node_group = { # karpenter mode only
    instance_types = ["t3.large", "m7i.large"]
    min_size       = 1
    desired_size   = 2
    max_size       = 2
  }
  gpu_instance_types = var.gpu_instance_types

  models_bucket = {
    force_destroy                  = true
    noncurrent_version_expiry_days = 7
  }

  registry_prefix     = var.registry_prefix
  github_repository   = var.github_repository
  state_bucket_name   = var.state_bucket_name
  domain_name         = var.domain_name
  route53_zone_id     = var.route53_zone_id
  elasticache_enabled = var.elasticache_enabled
}
