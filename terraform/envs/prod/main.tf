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
  karpenter_version = "1.14.1"
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

  name_prefix           = var.cluster_name
  github_repository     = var.github_repository
  apply_environment     = local.environment
  oidc_provider_arn     = data.aws_iam_openid_connect_provider.github[0].arn
  state_bucket_name     = var.state_bucket_name
  state_key_prefix      = "envs/${local.environment}/"
  managed_bucket_prefix = "${var.cluster_name}-models-"
}

# Account-wide pieces live in terraform/shared (applied once per account after bootstrap): one ECR
# registry for both environments (promotion by digest) and the account's only GitHub OIDC provider.
data "aws_ecr_repository" "this" {
  for_each = toset(["gateway", "engine"])

  name = "${var.registry_prefix}/${each.key}"
}

data "aws_iam_openid_connect_provider" "github" {
  count = var.github_repository == null ? 0 : 1

  url = "https://token.actions.githubusercontent.com"
}

# The repositories used to be per environment: forget them without deleting images (delete or import
# them into terraform/shared by hand).
removed {
  from = module.registry

  lifecycle {
    destroy = false
  }
}

# The gateway's HTTPS name (optional): the ALB is made in the cluster from the Ingress.
module "edge" {
  source = "../../modules/edge"
  count  = var.domain_name == null ? 0 : 1

  domain_name     = var.domain_name
  route53_zone_id = var.route53_zone_id
}

# Gateway shared state in ElastiCache (optional; default: the in-cluster Redis of the k8s side).
module "cache" {
  source = "../../modules/cache"
  count  = var.elasticache_enabled ? 1 : 0

  name                      = var.cluster_name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.eks.node_security_group_id]
}
