# prod: one NAT gateway per AZ, self-managed Karpenter (no Auto Mode fee on GPU instance-hours),
# 90 days of control-plane and flow logs, the weights bucket protected from `terraform destroy`.
# Everything is wired in modules/platform; this call is prod's choices.

locals {
  environment = "prod"

  tags = {
    project     = "inferstack"
    environment = local.environment
    managed-by  = "terraform"
  }
}

module "platform" {
  source = "../../modules/platform"

  environment        = local.environment
  name               = "inferstack-prod"
  kubernetes_version = "1.35"
  compute_mode       = "karpenter"
  karpenter_version  = "1.14.1"

  vpc_cidr                = "10.20.0.0/16"
  availability_zones      = var.availability_zones
  single_nat_gateway      = false # an AZ outage must not cut egress (image pulls, model downloads)
  flow_log_retention_days = 90

  public_access_cidrs  = var.public_access_cidrs
  admin_principal_arns = var.admin_principal_arns
  log_retention_days   = 90
  system_node_group = {
    instance_types = ["m7i.large", "m6i.large"]
    min_size       = 2 # Karpenter runs two replicas; keep them on separate nodes
    desired_size   = 2
    max_size       = 3
  }
  gpu_instance_types = var.gpu_instance_types

  models_bucket = {
    read_prefixes = ["models/", "adapters/"] # weights, and the LoRA adapters the engines sync
  }

  registry_prefix     = var.registry_prefix
  github_repository   = var.github_repository
  state_bucket_name   = var.state_bucket_name
  domain_name         = var.domain_name
  route53_zone_id     = var.route53_zone_id
  elasticache_enabled = var.elasticache_enabled
}
