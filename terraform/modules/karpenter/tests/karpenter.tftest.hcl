mock_provider "aws" {
  source = "../../tests/mocks"
}

# Known ARNs at plan time, so the policies that embed them can be read by assertions.
override_resource {
  target          = aws_sqs_queue.interruption
  override_during = plan
  values = {
    arn  = "arn:aws:sqs:us-east-1:123456789012:inferstack-test"
    name = "inferstack-test"
    url  = "https://sqs.us-east-1.amazonaws.com/123456789012/inferstack-test"
  }
}

override_resource {
  target          = aws_iam_role.node
  override_during = plan
  values = {
    arn  = "arn:aws:iam::123456789012:role/inferstack-test-karpenter-node"
    name = "inferstack-test-karpenter-node"
  }
}

variables {
  cluster_name = "inferstack-test"
}

run "controller_uses_pod_identity" {
  command = plan

  assert {
    condition = (aws_eks_pod_identity_association.controller.namespace == "kube-system"
      && aws_eks_pod_identity_association.controller.service_account == "karpenter"
    && aws_eks_pod_identity_association.controller.cluster_name == "inferstack-test")
    error_message = "The controller role must be bound to kube-system/karpenter through Pod Identity."
  }

  assert {
    condition     = jsondecode(aws_iam_role.controller.assume_role_policy).Statement[0].Principal.Service == "pods.eks.amazonaws.com"
    error_message = "The controller role must trust EKS Pod Identity, not an OIDC provider."
  }
}

run "controller_policy_is_least_privilege" {
  command = plan

  # Guard against the next assertion passing vacuously.
  assert {
    condition = length([
      for s in jsondecode(aws_iam_policy.controller.policy).Statement : s
      if length(setintersection(toset(flatten([s.Action])), toset(["ec2:TerminateInstances", "ec2:CreateLaunchTemplate", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile"]))) > 0
    ]) == 4
    error_message = "Expected four statements that create or delete instances, launch templates or instance profiles."
  }

  # Every mutating EC2 statement must be conditioned on this cluster's ownership tag.
  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_policy.controller.policy).Statement :
      anytrue([for k, v in merge(values(s.Condition)...) : k == "aws:RequestTag/kubernetes.io/cluster/inferstack-test" || k == "aws:ResourceTag/kubernetes.io/cluster/inferstack-test"])
      if length(setintersection(toset(flatten([s.Action])), toset(["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate", "ec2:CreateLaunchTemplate", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:AddRoleToInstanceProfile"]))) > 0
    ])
    error_message = "Create/delete actions must be scoped to resources tagged as owned by this cluster."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_policy.controller.policy).Statement : s
      if s.Sid == "AllowPassingInstanceRole"
    ]).Resource == "arn:aws:iam::123456789012:role/inferstack-test-karpenter-node"
    error_message = "iam:PassRole must be limited to the Karpenter node role."
  }

  assert {
    condition = one([
      for s in jsondecode(aws_iam_policy.controller.policy).Statement : s
      if s.Sid == "AllowInterruptionQueueActions"
    ]).Resource == "arn:aws:sqs:us-east-1:123456789012:inferstack-test"
    error_message = "SQS access must be limited to the interruption queue."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_policy.controller.policy).Statement :
      !contains(flatten([s.Action]), "*") && !contains(flatten([s.Action]), "ec2:*") && !contains(flatten([s.Action]), "iam:*")
    ])
    error_message = "No wildcard actions."
  }

  assert {
    condition = alltrue([
      for s in jsondecode(aws_iam_policy.controller.policy).Statement :
      contains(["AllowRegionalReadActions", "AllowPricingReadActions", "AllowUnscopedInstanceProfileListAction"], s.Sid)
      if s.Resource == "*"
    ])
    error_message = "Only read actions that cannot be scoped may use Resource \"*\"."
  }
}

run "nodes_can_join" {
  command = plan

  assert {
    condition     = aws_eks_access_entry.node.type == "EC2_LINUX"
    error_message = "Karpenter nodes join through an EC2_LINUX access entry."
  }

  assert {
    condition     = output.node_role_name == "inferstack-test-karpenter-node"
    error_message = "The EC2NodeClass needs the node role name."
  }

  assert {
    condition     = contains([for a in aws_iam_role_policy_attachment.node : a.policy_arn], "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy")
    error_message = "Karpenter nodes need the CNI policy: the VPC CNI runs with the node role."
  }
}

run "interruption_events_reach_the_queue" {
  command = plan

  assert {
    condition = toset([for r in aws_cloudwatch_event_rule.interruption : jsondecode(r.event_pattern)["detail-type"][0]]) == toset([
      "AWS Health Event",
      "EC2 Spot Instance Interruption Warning",
      "EC2 Instance Rebalance Recommendation",
      "EC2 Instance State-change Notification",
    ])
    error_message = "Health, spot interruption, rebalance and state-change events must all be captured."
  }

  assert {
    condition     = alltrue([for t in aws_cloudwatch_event_target.interruption : t.arn == "arn:aws:sqs:us-east-1:123456789012:inferstack-test"])
    error_message = "Every rule must target the interruption queue."
  }

  assert {
    condition     = aws_sqs_queue.interruption.sqs_managed_sse_enabled
    error_message = "The queue must be encrypted at rest."
  }

  assert {
    condition     = output.interruption_queue_name == "inferstack-test"
    error_message = "The queue name output feeds the chart's settings.interruptionQueue."
  }

  assert {
    condition = contains([
      for s in jsondecode(aws_sqs_queue_policy.interruption.policy).Statement : s.Effect
      if s.Sid == "EventBridgeWrites"
    ], "Allow") && contains(jsondecode(aws_sqs_queue_policy.interruption.policy).Statement[0].Principal.Service, "events.amazonaws.com")
    error_message = "EventBridge must be allowed to send to the queue."
  }
}
