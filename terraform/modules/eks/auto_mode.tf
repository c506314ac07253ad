# Auto Mode node role: used by the built-in pools and by the GPU NodeClass (`spec.role`) you add.
# EKS creates the node access entry for the role named in compute_config itself.

resource "aws_iam_role" "auto_node" {
  count = local.auto_mode ? 1 : 0

  name = "${var.cluster_name}-auto-node"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "auto_node" {
  # Auto Mode nodes need only these two: networking and storage run with the cluster role.
  for_each = local.auto_mode ? toset(["AmazonEKSWorkerNodeMinimalPolicy", "AmazonEC2ContainerRegistryPullOnly"]) : toset([])

  role       = aws_iam_role.auto_node[0].name
  policy_arn = "${local.policy_arn}/${each.value}"
}

# Without built-in pools EKS does not create the node access entry: a custom NodeClass using this
# role would launch nodes that cannot join. Create it ourselves in that case only (a duplicate fails).
resource "aws_eks_access_entry" "auto_node" {
  count = local.auto_mode && length(var.auto_mode_node_pools) == 0 ? 1 : 0

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_iam_role.auto_node[0].arn
  type          = "EC2"
  tags          = var.tags
}

resource "aws_eks_access_policy_association" "auto_node" {
  count = local.auto_mode && length(var.auto_mode_node_pools) == 0 ? 1 : 0

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = aws_iam_role.auto_node[0].arn
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy"

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.auto_node]
}
