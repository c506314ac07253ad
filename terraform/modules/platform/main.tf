# One environment of the platform: the modules wired together. Everything an environment decides
# (network shape, compute mode, sizes, retention, protection) is an input; envs/<env> only chooses.

module "network" {
  source = "../network"

  name                    = var.name
  cluster_name            = var.name
  cidr                    = var.vpc_cidr
  az_count                = 3
  availability_zones      = var.availability_zones
  single_nat_gateway      = var.single_nat_gateway
  flow_log_retention_days = var.flow_log_retention_days
}

module "eks" {
  source = "../eks"

  cluster_name        = var.name
  kubernetes_version  = var.kubernetes_version
  compute_mode        = var.compute_mode
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  public_access_cidrs = var.public_access_cidrs
  log_retention_days  = var.log_retention_days
  system_node_group   = var.system_node_group

  access_entries = merge(
    { for i, arn in var.admin_principal_arns : "admin-${i}" => { principal_arn = arn } },
    # The apply role also deploys the Kubernetes overlay, so it needs to reach the cluster.
    var.github_repository == null ? {} : { ci-apply = { principal_arn = module.ci[0].apply_role_arn } },
  )
}

module "karpenter" {
  source = "../karpenter"
  count  = var.compute_mode == "karpenter" ? 1 : 0

  cluster_name = module.eks.cluster_name
}

module "models" {
  source = "../models"

  cluster_name                   = module.eks.cluster_name
  namespace                      = var.namespace
  service_account                = "vllm-engine"
  read_prefixes                  = var.models_bucket.read_prefixes
  noncurrent_version_expiry_days = var.models_bucket.noncurrent_version_expiry_days
  force_destroy                  = var.models_bucket.force_destroy
}

module "ci" {
  source = "../ci"
  count  = var.github_repository == null ? 0 : 1

  name_prefix           = var.name
  github_repository     = var.github_repository
  apply_environment     = var.environment
  oidc_provider_arn     = data.aws_iam_openid_connect_provider.github[0].arn
  state_bucket_name     = var.state_bucket_name
  state_key_prefix      = "envs/${var.environment}/"
  managed_bucket_prefix = "${var.name}-models-"
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

# The gateway's HTTPS name (optional): the ALB is made in the cluster from the Ingress.
module "edge" {
  source = "../edge"
  count  = var.domain_name == null ? 0 : 1

  domain_name     = var.domain_name
  route53_zone_id = var.route53_zone_id
}

# Gateway shared state in ElastiCache (optional; default: the in-cluster Redis of the k8s side).
module "cache" {
  source = "../cache"
  count  = var.elasticache_enabled ? 1 : 0

  name                      = var.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.private_subnet_ids
  client_security_group_ids = [module.eks.node_security_group_id]
}
