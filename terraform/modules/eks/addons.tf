# EKS managed add-ons, Karpenter mode only: Auto Mode runs the same components itself, on the node.
# Split in two so that networking exists before the node group and CoreDNS / EBS CSI (which need
# nodes to become healthy) come after it.

locals {
  addons_before_compute = local.auto_mode ? toset([]) : toset(["vpc-cni", "kube-proxy", "eks-pod-identity-agent"])
  addons_after_compute  = local.auto_mode ? toset([]) : toset(["coredns", "aws-ebs-csi-driver"])
}

resource "aws_eks_addon" "before_compute" {
  for_each = local.addons_before_compute

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.value
  addon_version               = lookup(var.addon_versions, each.value, null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "PRESERVE"
  # The VPC CNI's network policy agent: without it NetworkPolicy objects are accepted and ignored.
  # (Auto Mode: the k8s side's amazon-vpc-cni ConfigMap + NodeClass networkPolicy do the same.)
  configuration_values = each.value == "vpc-cni" ? jsonencode({ enableNetworkPolicy = "true" }) : null
  tags                 = var.tags
}

resource "aws_eks_addon" "after_compute" {
  for_each = local.addons_after_compute

  cluster_name                = aws_eks_cluster.this.name
  addon_name                  = each.value
  addon_version               = lookup(var.addon_versions, each.value, null)
  resolve_conflicts_on_create = "OVERWRITE"
  resolve_conflicts_on_update = "PRESERVE"

  dynamic "pod_identity_association" {
    for_each = each.value == "aws-ebs-csi-driver" ? [1] : []
    content {
      role_arn        = aws_iam_role.ebs_csi[0].arn
      service_account = "ebs-csi-controller-sa"
    }
  }

  tags = var.tags

  depends_on = [aws_eks_node_group.system]
}

resource "aws_iam_role" "ebs_csi" {
  count = local.auto_mode ? 0 : 1

  name               = "${var.cluster_name}-ebs-csi"
  assume_role_policy = local.pod_identity_trust
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  count = local.auto_mode ? 0 : 1

  role       = aws_iam_role.ebs_csi[0].name
  policy_arn = "${local.policy_arn}/service-role/AmazonEBSCSIDriverPolicy"
}
