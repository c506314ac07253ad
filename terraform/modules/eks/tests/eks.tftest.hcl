mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  cluster_name = "inferstack-test"
  vpc_id       = "vpc-0123456789abcdef0"
  subnet_ids   = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2", "subnet-0ccccccccccccccc3"]
}

run "auto_mode_switches_are_set_together" {
  command = plan

  variables {
    compute_mode = "auto"
  }

  assert {
    condition = (aws_eks_cluster.this.compute_config[0].enabled
      && aws_eks_cluster.this.kubernetes_network_config[0].elastic_load_balancing[0].enabled
    && aws_eks_cluster.this.storage_config[0].block_storage[0].enabled)
    error_message = "Auto Mode needs compute, load balancing and block storage enabled together."
  }

  assert {
    condition     = aws_eks_cluster.this.bootstrap_self_managed_addons == false
    error_message = "Auto Mode requires bootstrap_self_managed_addons = false."
  }

  assert {
    condition     = toset(aws_eks_cluster.this.compute_config[0].node_pools) == toset(["system", "general-purpose"])
    error_message = "Built-in CPU pools host system pods and the gateway."
  }

  assert {
    condition = toset([for a in aws_iam_role_policy_attachment.cluster : a.policy_arn]) == toset([
      "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
      "arn:aws:iam::aws:policy/AmazonEKSComputePolicy",
      "arn:aws:iam::aws:policy/AmazonEKSBlockStoragePolicy",
      "arn:aws:iam::aws:policy/AmazonEKSLoadBalancingPolicy",
      "arn:aws:iam::aws:policy/AmazonEKSNetworkingPolicy",
    ])
    error_message = "The Auto Mode cluster role needs the compute, storage, load balancing and networking policies."
  }

  assert {
    condition     = contains(jsondecode(aws_iam_role.cluster.assume_role_policy).Statement[0].Action, "sts:TagSession")
    error_message = "Auto Mode's cluster role trust must allow sts:TagSession."
  }

  assert {
    condition     = length(aws_eks_node_group.system) == 0 && length(aws_eks_addon.before_compute) == 0 && length(aws_eks_addon.after_compute) == 0
    error_message = "Auto Mode runs its own nodes and core components: no node group, no add-ons."
  }

  assert {
    condition     = output.auto_mode_node_role_name == "inferstack-test-auto-node"
    error_message = "The GPU NodeClass needs the Auto Mode node role name."
  }

  assert {
    condition     = length(aws_eks_access_entry.auto_node) == 0
    error_message = "EKS creates the node access entry itself when built-in pools are on; a second one fails."
  }
}

run "auto_mode_without_builtin_pools_creates_node_access" {
  command = plan

  variables {
    auto_mode_node_pools = []
  }

  assert {
    condition     = aws_eks_access_entry.auto_node[0].type == "EC2"
    error_message = "Without built-in pools, the node role needs its own EC2 access entry."
  }

  assert {
    condition     = aws_eks_access_policy_association.auto_node[0].policy_arn == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy"
    error_message = "Auto Mode nodes need AmazonEKSAutoNodePolicy."
  }
}

run "karpenter_mode_has_system_nodes_and_addons" {
  command = plan

  variables {
    compute_mode = "karpenter"
  }

  assert {
    condition     = length(aws_eks_cluster.this.compute_config) == 0 && length(aws_eks_cluster.this.storage_config) == 0
    error_message = "Auto Mode blocks must be absent in Karpenter mode."
  }

  assert {
    condition     = toset(keys(merge(aws_eks_addon.before_compute, aws_eks_addon.after_compute))) == toset(["vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns", "aws-ebs-csi-driver"])
    error_message = "Karpenter mode installs vpc-cni, kube-proxy, pod identity agent, CoreDNS and EBS CSI as managed add-ons."
  }

  assert {
    condition     = jsondecode(aws_eks_addon.before_compute["vpc-cni"].configuration_values).enableNetworkPolicy == "true"
    error_message = "NetworkPolicies are enforced: the VPC CNI add-on runs its network policy agent."
  }

  assert {
    condition     = aws_eks_pod_identity_association.lb_controller[0].service_account == "aws-load-balancer-controller" && aws_eks_pod_identity_association.lb_controller[0].namespace == "kube-system"
    error_message = "The AWS Load Balancer Controller gets its role through Pod Identity (kube-system/aws-load-balancer-controller)."
  }

  assert {
    condition     = one([for s in jsondecode(aws_iam_role_policy.lb_controller[0].policy).Statement : s.Condition.StringEquals["aws:ResourceTag/elbv2.k8s.aws/cluster"] if s.Sid == "ManageOwnLoadBalancers"]) == "inferstack-test"
    error_message = "The controller changes only load balancers tagged as this cluster's."
  }

  assert {
    condition     = one(aws_eks_addon.after_compute["aws-ebs-csi-driver"].pod_identity_association).service_account == "ebs-csi-controller-sa"
    error_message = "The EBS CSI driver gets its IAM role through Pod Identity."
  }

  assert {
    condition     = jsondecode(aws_iam_role.ebs_csi[0].assume_role_policy).Statement[0].Principal.Service == "pods.eks.amazonaws.com"
    error_message = "Pod Identity roles must trust pods.eks.amazonaws.com."
  }

  assert {
    condition     = toset(aws_eks_node_group.system[0].subnet_ids) == toset(var.subnet_ids)
    error_message = "System nodes must live in the private subnets given to the module."
  }

  assert {
    condition     = aws_eks_node_group.system[0].capacity_type == "ON_DEMAND"
    error_message = "The node group that runs Karpenter must not be spot."
  }

  assert {
    condition     = one(aws_eks_node_group.system[0].taint).key == "CriticalAddonsOnly"
    error_message = "System nodes are tainted so that workloads go to Karpenter nodes."
  }

  assert {
    condition = (aws_launch_template.system[0].metadata_options[0].http_tokens == "required"
    && aws_launch_template.system[0].metadata_options[0].http_put_response_hop_limit == 1)
    error_message = "Nodes must enforce IMDSv2 with hop limit 1 so pods cannot use the node role."
  }

  assert {
    condition     = aws_launch_template.system[0].block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "Node root volumes must be encrypted."
  }

  assert {
    condition     = length(aws_iam_role.auto_node) == 0 && output.auto_mode_node_role_name == null
    error_message = "No Auto Mode role in Karpenter mode."
  }
}

run "control_plane_is_encrypted_logged_and_private" {
  command = plan

  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].resources == toset(["secrets"])
    error_message = "Kubernetes Secrets must be envelope-encrypted with KMS."
  }

  assert {
    condition     = aws_kms_key.eks.enable_key_rotation
    error_message = "KMS key rotation must be on."
  }

  assert {
    condition     = toset(aws_eks_cluster.this.enabled_cluster_log_types) == toset(["api", "audit", "authenticator", "controllerManager", "scheduler"])
    error_message = "All control-plane log types are on by default."
  }

  assert {
    condition     = aws_cloudwatch_log_group.cluster.name == "/aws/eks/inferstack-test/cluster"
    error_message = "The log group must have the name EKS writes to, or EKS creates an unmanaged one."
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_private_access
    error_message = "The private API endpoint is always on (nodes talk to it without leaving the VPC)."
  }

  assert {
    condition     = aws_eks_cluster.this.access_config[0].authentication_mode == "API"
    error_message = "Access entries only: no aws-auth ConfigMap."
  }

  assert {
    condition     = aws_eks_cluster.this.upgrade_policy[0].support_type == "STANDARD"
    error_message = "Extended support costs 6x; it must be an explicit choice."
  }

  assert {
    condition     = aws_ec2_tag.cluster_sg_karpenter_discovery.key == "karpenter.sh/discovery" && aws_ec2_tag.cluster_sg_karpenter_discovery.value == "inferstack-test"
    error_message = "The node security group must carry the Karpenter discovery tag."
  }

  assert {
    condition     = output.update_kubeconfig_command == "aws eks update-kubeconfig --region us-east-1 --name inferstack-test"
    error_message = "The kubeconfig command must name the region and cluster."
  }
}

run "access_entries_are_scoped" {
  command = plan

  variables {
    access_entries = {
      admins = { principal_arn = "arn:aws:iam::123456789012:role/Admin" }
      viewer = { principal_arn = "arn:aws:iam::123456789012:role/ci-plan", policy = "AmazonEKSViewPolicy", namespaces = ["inferstack"] }
    }
  }

  assert {
    condition     = aws_eks_access_policy_association.this["admins"].access_scope[0].type == "cluster"
    error_message = "An entry without namespaces is cluster-wide."
  }

  assert {
    condition = (aws_eks_access_policy_association.this["viewer"].access_scope[0].type == "namespace"
    && aws_eks_access_policy_association.this["viewer"].policy_arn == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy")
    error_message = "A namespaced entry must be limited to its namespaces with its own policy."
  }
}

run "rejects_unknown_compute_mode" {
  command = plan

  variables {
    compute_mode = "fargate"
  }

  expect_failures = [var.compute_mode]
}

run "rejects_assumed_role_arn_in_access_entries" {
  command = plan

  variables {
    access_entries = {
      me = { principal_arn = "arn:aws:sts::123456789012:assumed-role/Admin/me" }
    }
  }

  expect_failures = [var.access_entries]
}

run "rejects_single_subnet" {
  command = plan

  variables {
    subnet_ids = ["subnet-0aaaaaaaaaaaaaaa1"]
  }

  expect_failures = [var.subnet_ids]
}
