# Karpenter mode: the AWS Load Balancer Controller turns the gateway's Ingress into an ALB (Auto Mode
# has this built in: IngressClass controller eks.amazonaws.com/alb). Its role, bound by Pod Identity
# to kube-system/aws-load-balancer-controller; the k8s side installs the chart with that service
# account. Written for this cluster: it creates and changes only load balancers, target groups and
# security groups carrying the controller's cluster tag.

locals {
  lb_tag = "elbv2.k8s.aws/cluster"
  lb_controller_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "Read"
        Effect = "Allow"
        Action = [
          "acm:DescribeCertificate", "acm:ListCertificates",
          "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones", "ec2:DescribeCoipPools",
          "ec2:DescribeInstances", "ec2:DescribeInternetGateways", "ec2:DescribeNetworkInterfaces", "ec2:DescribeRouteTables",
          "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeTags", "ec2:DescribeVpcPeeringConnections",
          "ec2:DescribeVpcs", "ec2:GetCoipPoolUsage", "ec2:GetSecurityGroupsForVpc",
          "elasticloadbalancing:Describe*",
          "iam:GetServerCertificate", "iam:ListServerCertificates",
          "shield:GetSubscriptionState", "wafv2:GetWebACL", "wafv2:GetWebACLForResource",
        ]
        Resource = "*"
      },
      {
        Sid       = "ServiceLinkedRole"
        Effect    = "Allow"
        Action    = "iam:CreateServiceLinkedRole"
        Resource  = "*"
        Condition = { StringEquals = { "iam:AWSServiceName" = "elasticloadbalancing.amazonaws.com" } }
      },
      {
        Sid       = "CreateTaggedSecurityGroups"
        Effect    = "Allow"
        Action    = ["ec2:CreateSecurityGroup", "ec2:CreateTags"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:RequestTag/${local.lb_tag}" = var.cluster_name } }
      },
      {
        Sid       = "ManageOwnSecurityGroups"
        Effect    = "Allow"
        Action    = ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup", "ec2:CreateTags", "ec2:DeleteTags"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:ResourceTag/${local.lb_tag}" = var.cluster_name } }
      },
      {
        # Rules on the node security group let the ALB reach pods (target type ip).
        Sid       = "NodeSecurityGroupIngress"
        Effect    = "Allow"
        Action    = ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:ResourceTag/karpenter.sh/discovery" = var.cluster_name } }
      },
      {
        Sid       = "CreateTaggedLoadBalancers"
        Effect    = "Allow"
        Action    = ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:RequestTag/${local.lb_tag}" = var.cluster_name } }
      },
      {
        Sid    = "ManageOwnLoadBalancers"
        Effect = "Allow"
        Action = [
          "elasticloadbalancing:AddTags", "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup",
          "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:ModifyTargetGroup",
          "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:RemoveTags",
          "elasticloadbalancing:SetIpAddressType", "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
          "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets",
        ]
        Resource  = "*"
        Condition = { StringEquals = { "aws:ResourceTag/${local.lb_tag}" = var.cluster_name } }
      },
      {
        # Listeners and rules carry no cluster tag of their own: scoped to ELB resources in this account and region.
        Sid    = "ListenersAndRules"
        Effect = "Allow"
        Action = [
          "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:ModifyListener",
          "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule", "elasticloadbalancing:ModifyRule",
          "elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
          "elasticloadbalancing:SetWebAcl", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
        ]
        Resource = ["arn:${local.partition}:elasticloadbalancing:${local.region}:${local.account_id}:*", "arn:${local.partition}:wafv2:${local.region}:${local.account_id}:*"]
      },
    ]
  }
}

resource "aws_iam_role" "lb_controller" {
  count = local.auto_mode ? 0 : 1

  name               = "${var.cluster_name}-lb-controller"
  assume_role_policy = local.pod_identity_trust
  tags               = var.tags
}

resource "aws_iam_role_policy" "lb_controller" {
  count = local.auto_mode ? 0 : 1

  name   = "aws-load-balancer-controller"
  role   = aws_iam_role.lb_controller[0].id
  policy = jsonencode(local.lb_controller_policy)
}

resource "aws_eks_pod_identity_association" "lb_controller" {
  count = local.auto_mode ? 0 : 1

  cluster_name    = aws_eks_cluster.this.name
  namespace       = "kube-system"
  service_account = "aws-load-balancer-controller"
  role_arn        = aws_iam_role.lb_controller[0].arn
  tags            = var.tags

  depends_on = [aws_eks_addon.before_compute] # the Pod Identity agent
}
