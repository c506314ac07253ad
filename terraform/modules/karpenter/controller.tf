# Karpenter controller identity: an IAM role bound to its service account through EKS Pod Identity.
# The policy follows Karpenter v1's reference policy: create and delete only what carries this
# cluster's ownership tags, read-only elsewhere, pass only the node role.

resource "aws_iam_role" "controller" {
  name = "${var.cluster_name}-karpenter-controller"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "pods.eks.amazonaws.com" }
      Action    = ["sts:AssumeRole", "sts:TagSession"]
    }]
  })
  tags = var.tags
}

locals {
  ec2_arn = "arn:${local.partition}:ec2:${local.region}"
  # Resources that RunInstances / CreateFleet create and that must be tagged as this cluster's.
  ec2_created = [for r in ["fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request"] : "${local.ec2_arn}:*:${r}/*"]

  controller_policy = {
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "AllowScopedEC2InstanceAccessActions"
        Effect = "Allow"
        Action = ["ec2:RunInstances", "ec2:CreateFleet"]
        Resource = [
          "${local.ec2_arn}::image/*",
          "${local.ec2_arn}::snapshot/*",
          "${local.ec2_arn}:*:security-group/*",
          "${local.ec2_arn}:*:subnet/*",
          "${local.ec2_arn}:*:capacity-reservation/*",
        ]
      },
      {
        Sid      = "AllowScopedEC2LaunchTemplateAccessActions"
        Effect   = "Allow"
        Action   = ["ec2:RunInstances", "ec2:CreateFleet"]
        Resource = "${local.ec2_arn}:*:launch-template/*"
        Condition = {
          StringEquals = { "aws:ResourceTag/${local.owned_tag}" = "owned" }
          StringLike   = { "aws:ResourceTag/karpenter.sh/nodepool" = "*" }
        }
      },
      {
        Sid      = "AllowScopedEC2InstanceActionsWithTags"
        Effect   = "Allow"
        Action   = ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"]
        Resource = local.ec2_created
        Condition = {
          StringEquals = {
            "aws:RequestTag/${local.owned_tag}"   = "owned"
            "aws:RequestTag/eks:eks-cluster-name" = var.cluster_name
          }
          StringLike = { "aws:RequestTag/karpenter.sh/nodepool" = "*" }
        }
      },
      {
        Sid      = "AllowScopedResourceCreationTagging"
        Effect   = "Allow"
        Action   = "ec2:CreateTags"
        Resource = local.ec2_created
        Condition = {
          StringEquals = {
            "aws:RequestTag/${local.owned_tag}"   = "owned"
            "aws:RequestTag/eks:eks-cluster-name" = var.cluster_name
            "ec2:CreateAction"                    = ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]
          }
          StringLike = { "aws:RequestTag/karpenter.sh/nodepool" = "*" }
        }
      },
      {
        Sid      = "AllowScopedResourceTagging"
        Effect   = "Allow"
        Action   = "ec2:CreateTags"
        Resource = "${local.ec2_arn}:*:instance/*"
        Condition = {
          StringEquals                = { "aws:ResourceTag/${local.owned_tag}" = "owned" }
          StringLike                  = { "aws:ResourceTag/karpenter.sh/nodepool" = "*" }
          StringEqualsIfExists        = { "aws:RequestTag/eks:eks-cluster-name" = var.cluster_name }
          "ForAllValues:StringEquals" = { "aws:TagKeys" = ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"] }
        }
      },
      {
        Sid      = "AllowScopedDeletion"
        Effect   = "Allow"
        Action   = ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"]
        Resource = ["${local.ec2_arn}:*:instance/*", "${local.ec2_arn}:*:launch-template/*"]
        Condition = {
          StringEquals = { "aws:ResourceTag/${local.owned_tag}" = "owned" }
          StringLike   = { "aws:ResourceTag/karpenter.sh/nodepool" = "*" }
        }
      },
      {
        # Describe* calls cannot be scoped to resources; they are limited to this region.
        Sid    = "AllowRegionalReadActions"
        Effect = "Allow"
        Action = [
          "ec2:DescribeAvailabilityZones",
          "ec2:DescribeCapacityReservations",
          "ec2:DescribeImages",
          "ec2:DescribeInstances",
          "ec2:DescribeInstanceTypeOfferings",
          "ec2:DescribeInstanceTypes",
          "ec2:DescribeLaunchTemplates",
          "ec2:DescribeSecurityGroups",
          "ec2:DescribeSpotPriceHistory",
          "ec2:DescribeSubnets",
        ]
        Resource  = "*"
        Condition = { StringEquals = { "aws:RequestedRegion" = local.region } }
      },
      {
        # Public AMI parameters (EKS-optimized and Bottlerocket, accelerated variants included).
        Sid      = "AllowSSMReadActions"
        Effect   = "Allow"
        Action   = "ssm:GetParameter"
        Resource = "arn:${local.partition}:ssm:${local.region}::parameter/aws/service/*"
      },
      {
        Sid      = "AllowPricingReadActions"
        Effect   = "Allow"
        Action   = "pricing:GetProducts"
        Resource = "*"
      },
      {
        Sid      = "AllowInterruptionQueueActions"
        Effect   = "Allow"
        Action   = ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]
        Resource = aws_sqs_queue.interruption.arn
      },
      {
        Sid       = "AllowPassingInstanceRole"
        Effect    = "Allow"
        Action    = "iam:PassRole"
        Resource  = aws_iam_role.node.arn
        Condition = { StringEquals = { "iam:PassedToService" = "ec2.amazonaws.com" } }
      },
      {
        Sid      = "AllowScopedInstanceProfileCreationActions"
        Effect   = "Allow"
        Action   = "iam:CreateInstanceProfile"
        Resource = "arn:${local.partition}:iam::${local.account_id}:instance-profile/*"
        Condition = {
          StringEquals = {
            "aws:RequestTag/${local.owned_tag}"            = "owned"
            "aws:RequestTag/eks:eks-cluster-name"          = var.cluster_name
            "aws:RequestTag/topology.kubernetes.io/region" = local.region
          }
          StringLike = { "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass" = "*" }
        }
      },
      {
        Sid      = "AllowScopedInstanceProfileTagActions"
        Effect   = "Allow"
        Action   = "iam:TagInstanceProfile"
        Resource = "arn:${local.partition}:iam::${local.account_id}:instance-profile/*"
        Condition = {
          StringEquals = {
            "aws:ResourceTag/${local.owned_tag}"            = "owned"
            "aws:ResourceTag/topology.kubernetes.io/region" = local.region
            "aws:RequestTag/${local.owned_tag}"             = "owned"
            "aws:RequestTag/eks:eks-cluster-name"           = var.cluster_name
            "aws:RequestTag/topology.kubernetes.io/region"  = local.region
          }
          StringLike = {
            "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass" = "*"
            "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass"  = "*"
          }
        }
      },
      {
        Sid      = "AllowScopedInstanceProfileActions"
        Effect   = "Allow"
        Action   = ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"]
        Resource = "arn:${local.partition}:iam::${local.account_id}:instance-profile/*"
        Condition = {
          StringEquals = {
            "aws:ResourceTag/${local.owned_tag}"            = "owned"
            "aws:ResourceTag/topology.kubernetes.io/region" = local.region
          }
          StringLike = { "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass" = "*" }
        }
      },
      {
        Sid      = "AllowInstanceProfileReadActions"
        Effect   = "Allow"
        Action   = "iam:GetInstanceProfile"
        Resource = "arn:${local.partition}:iam::${local.account_id}:instance-profile/*"
      },
      {
        # Karpenter v1.1+ lists profiles to garbage-collect the ones it created; List cannot be scoped.
        Sid      = "AllowUnscopedInstanceProfileListAction"
        Effect   = "Allow"
        Action   = "iam:ListInstanceProfiles"
        Resource = "*"
      },
      {
        Sid      = "AllowAPIServerEndpointDiscovery"
        Effect   = "Allow"
        Action   = "eks:DescribeCluster"
        Resource = local.cluster_arn
      },
    ]
  }
}

resource "aws_iam_policy" "controller" {
  name        = "${var.cluster_name}-karpenter-controller"
  description = "Karpenter controller for ${var.cluster_name}: nodes tagged as this cluster's only"
  policy      = jsonencode(local.controller_policy)
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "controller" {
  role       = aws_iam_role.controller.name
  policy_arn = aws_iam_policy.controller.arn
}

resource "aws_eks_pod_identity_association" "controller" {
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.controller.arn
  tags            = var.tags
}
