# prod: one NAT gateway per AZ, self-managed Karpenter (no Auto Mode fee on GPU instance-hours),
# full control-plane logging, repositories and buckets protected from `terraform destroy`.

locals {
  environment = "prod"
  namespace   = "inferstack" # gateway and engines (k8s/overlays/aws-gpu)

  tags = {
    project     = "inferstack"
    environment = local.environment
    managed-by  = "terraform"
  }

  # Karpenter chart version the controller policy in modules/karpenter was written for (v1 API).
  karpenter_version = "1.5.0"
}

module "network" {
  source = "../../modules/network"

  name                    = var.cluster_name
  cluster_name            = var.cluster_name
  cidr                    = "10.20.0.0/16"
  az_count                = 3
  availability_zones      = var.availability_zones
  single_nat_gateway      = false # an AZ outage must not cut egress (image pulls, model downloads)
  flow_log_retention_days = 90
}

module "eks" {
  source = "../../modules/eks"

  cluster_name        = var.cluster_name
  kubernetes_version  = var.kubernetes_version
  compute_mode        = var.compute_mode
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  public_access_cidrs = var.public_access_cidrs
  log_retention_days  = 90

  system_node_group = {
    instance_types = ["m7i.large", "m6i.large"]
    min_size       = 2 # Karpenter runs two replicas; keep them on separate nodes
    desired_size   = 2
    max_size       = 3
  }

  access_entries = merge(
    { for i, arn in var.admin_principal_arns : "admin-${i}" => { principal_arn = arn } },
    var.github_repository == null ? {} : { ci-apply = { principal_arn = module.ci[0].apply_role_arn } },
  )
}

module "karpenter" {
  source = "../../modules/karpenter"
  count  = var.compute_mode == "karpenter" ? 1 : 0

  cluster_name = module.eks.cluster_name
}

module "registry" {
  source = "../../modules/registry"

  name_prefix        = var.cluster_name
  keep_tagged_images = 30
}

module "models" {
  source = "../../modules/models"

  cluster_name    = module.eks.cluster_name
  namespace       = local.namespace
  service_account = "vllm-engine"
  read_prefixes   = ["models/"]
}

module "ci" {
  source = "../../modules/ci"
  count  = var.github_repository == null ? 0 : 1

  name_prefix          = var.cluster_name
  github_repository    = var.github_repository
  apply_environment    = local.environment
  state_bucket_name    = var.state_bucket_name
  state_key_prefix     = "envs/${local.environment}/"
  create_oidc_provider = var.create_github_oidc_provider
  oidc_provider_arn    = var.github_oidc_provider_arn
  ecr_repository_arns  = values(module.registry.repository_arns)
}
