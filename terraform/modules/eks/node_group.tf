# Karpenter mode: a small on-demand managed node group for what must exist before Karpenter can
# create nodes (Karpenter itself, CoreDNS, EBS CSI controller). GPUs never come from here.

locals {
  system_ng = var.system_node_group
}

resource "aws_iam_role" "system_node" {
  count = local.auto_mode ? 0 : 1

  name = "${var.cluster_name}-system-node"
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

resource "aws_iam_role_policy_attachment" "system_node" {
  for_each = local.auto_mode ? toset([]) : toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy", # the VPC CNI runs with the node role (it must work before any pod does)
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore", # shell access through SSM instead of SSH keys
  ])

  role       = aws_iam_role.system_node[0].name
  policy_arn = "${local.policy_arn}/${each.value}"
}

resource "aws_launch_template" "system" {
  count = local.auto_mode ? 0 : 1

  name_prefix = "${var.cluster_name}-system-"
  description = "System node group: IMDSv2 only, encrypted gp3 root volume"

  # Pods use EKS Pod Identity; hop limit 1 keeps them from borrowing the node role through IMDS.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = local.system_ng.disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.cluster_name}-system" })
  }

  tags = var.tags
}

resource "aws_eks_node_group" "system" {
  count = local.auto_mode ? 0 : 1

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "system"
  node_role_arn   = aws_iam_role.system_node[0].arn
  subnet_ids      = var.subnet_ids
  ami_type        = "AL2023_x86_64_STANDARD"
  capacity_type   = "ON_DEMAND" # Karpenter must not be evicted by a spot reclaim
  instance_types  = local.system_ng.instance_types

  scaling_config {
    min_size     = local.system_ng.min_size
    max_size     = local.system_ng.max_size
    desired_size = local.system_ng.desired_size
  }

  update_config {
    max_unavailable = 1
  }

  launch_template {
    id      = aws_launch_template.system[0].id
    version = aws_launch_template.system[0].latest_version
  }

  labels = {
    "inferstack.io/pool" = "system"
  }

  dynamic "taint" {
    for_each = local.system_ng.taint_critical_addons_only ? [1] : []
    content {
      key    = "CriticalAddonsOnly"
      value  = "true"
      effect = "NO_SCHEDULE"
    }
  }

  tags = var.tags

  # The CNI and pod identity agent must exist before nodes, or nodes never become Ready.
  depends_on = [
    aws_iam_role_policy_attachment.system_node,
    aws_eks_addon.before_compute,
  ]

  lifecycle {
    # Resizing by hand (or by an autoscaler) must survive the next apply.
    ignore_changes = [scaling_config[0].desired_size]
  }
}
