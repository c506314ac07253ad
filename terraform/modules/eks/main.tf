data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  auto_mode  = var.compute_mode == "auto"
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  policy_arn = "arn:${local.partition}:iam::aws:policy"

  # Auto Mode drives EC2, EBS and ELB on the cluster's behalf, so its cluster role needs more.
  cluster_policies = concat(
    ["AmazonEKSClusterPolicy"],
    local.auto_mode ? ["AmazonEKSComputePolicy", "AmazonEKSBlockStoragePolicy", "AmazonEKSLoadBalancingPolicy", "AmazonEKSNetworkingPolicy"] : [],
  )
}

resource "aws_iam_role" "cluster" {
  name = "${var.cluster_name}-cluster"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "eks.amazonaws.com" }
      # TagSession: Auto Mode tags the sessions it uses to launch and manage instances.
      Action = ["sts:AssumeRole", "sts:TagSession"]
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  for_each = toset(local.cluster_policies)

  role       = aws_iam_role.cluster.name
  policy_arn = "${local.policy_arn}/${each.value}"
}

resource "aws_cloudwatch_log_group" "cluster" {
  # EKS writes to this exact name; creating it first lets Terraform own retention and encryption.
  name              = "/aws/eks/${var.cluster_name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.eks.arn
  tags              = var.tags
}

resource "aws_eks_cluster" "this" {
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  enabled_cluster_log_types = var.log_types

  # Nothing self-managed: Auto Mode requires false, and in Karpenter mode the same components are
  # installed as EKS managed add-ons (addons.tf) so that upgrades are one API call.
  bootstrap_self_managed_addons = false

  access_config {
    authentication_mode                         = "API" # access entries only, no aws-auth ConfigMap
    bootstrap_cluster_creator_admin_permissions = var.bootstrap_creator_admin
  }

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = var.endpoint_public_access
    public_access_cidrs     = var.endpoint_public_access ? var.public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.eks.arn
    }
  }

  # Standard support only: extended support costs 6x the control-plane price ($0.60/h vs $0.10/h).
  upgrade_policy {
    support_type = "STANDARD"
  }

  # Auto Mode is three switches that AWS requires to be on together.
  dynamic "compute_config" {
    for_each = local.auto_mode ? [1] : []
    content {
      enabled       = true
      node_pools    = var.auto_mode_node_pools
      node_role_arn = length(var.auto_mode_node_pools) > 0 ? aws_iam_role.auto_node[0].arn : null # EKS rejects a role without pools
    }
  }

  kubernetes_network_config {
    dynamic "elastic_load_balancing" {
      for_each = local.auto_mode ? [1] : []
      content {
        enabled = true
      }
    }
  }

  dynamic "storage_config" {
    for_each = local.auto_mode ? [1] : []
    content {
      block_storage {
        enabled = true
      }
    }
  }

  tags = var.tags

  depends_on = [
    aws_iam_role_policy_attachment.cluster,
    aws_iam_role_policy.cluster_kms,
    aws_cloudwatch_log_group.cluster,
  ]
}

# Nodes (managed node group, Karpenter and Auto Mode alike) get the EKS-created cluster security
# group; tagging it makes it selectable by Karpenter / NodeClass `securityGroupSelectorTerms`.
resource "aws_ec2_tag" "cluster_sg_karpenter_discovery" {
  resource_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  key         = "karpenter.sh/discovery"
  value       = var.cluster_name
}
