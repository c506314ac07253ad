# What kubectl, the Kubernetes overlay (k8s/overlays/aws-gpu) and the pipeline need.

output "cluster_name" {
  description = "EKS cluster name."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.eks.cluster_endpoint
}

output "update_kubeconfig_command" {
  description = "Run this, then `kubectl apply -k k8s/overlays/aws-gpu`."
  value       = module.eks.update_kubeconfig_command
}

output "compute_mode" {
  description = "\"auto\": GPU NodePool uses an eks.amazonaws.com NodeClass; \"karpenter\": a karpenter.k8s.aws EC2NodeClass."
  value       = module.eks.compute_mode
}

output "region" {
  description = "AWS region."
  value       = var.region
}

output "namespace" {
  description = "Namespace of the gateway and engines (Pod Identity associations point at it)."
  value       = local.namespace
}

output "karpenter_node_role_name" {
  description = "IAM role of GPU nodes: NodeClass / EC2NodeClass `spec.role` (Auto Mode node role in auto mode)."
  value       = var.compute_mode == "karpenter" ? module.karpenter[0].node_role_name : module.eks.auto_mode_node_role_name
}

output "karpenter_interruption_queue_name" {
  description = "Karpenter chart `settings.interruptionQueue`. Null in Auto Mode (AWS handles interruptions)."
  value       = var.compute_mode == "karpenter" ? module.karpenter[0].interruption_queue_name : null
}

output "karpenter_controller_role_arn" {
  description = "Karpenter controller role (already bound to kube-system/karpenter by Pod Identity). Null in Auto Mode."
  value       = var.compute_mode == "karpenter" ? module.karpenter[0].controller_role_arn : null
}

output "karpenter_discovery_tag" {
  description = "Tag on private subnets and the node security group: NodeClass subnet/securityGroup selector terms."
  value       = { "karpenter.sh/discovery" = module.eks.cluster_name }
}

output "node_security_group_id" {
  description = "Security group of all nodes (EKS cluster security group)."
  value       = module.eks.node_security_group_id
}

output "private_subnet_ids" {
  description = "Private subnets: the only place nodes run."
  value       = module.network.private_subnet_ids
}

output "gpu_instance_types" {
  description = "GPU instance types intended for the GPU NodePool's `node.kubernetes.io/instance-type` requirement."
  value       = var.gpu_instance_types
}

output "ecr_gateway_url" {
  description = "Gateway image repository."
  value       = module.registry.repository_urls["gateway"]
}

output "ecr_engine_url" {
  description = "Engine (vLLM) image repository."
  value       = module.registry.repository_urls["engine"]
}

output "models_bucket_name" {
  description = "Model-weights bucket engines read from."
  value       = module.models.bucket_name
}

output "engine_role_arn" {
  description = "Role engine pods (service account inferstack/vllm-engine) get through Pod Identity."
  value       = module.models.engine_role_arn
}

output "ci_plan_role_arn" {
  description = "GitHub Actions role for terraform plan. Null without github_repository."
  value       = one(module.ci[*].plan_role_arn)
}

output "ci_apply_role_arn" {
  description = "GitHub Actions role for terraform apply and kubectl apply (environment-protected)."
  value       = one(module.ci[*].apply_role_arn)
}

output "ci_push_role_arn" {
  description = "GitHub Actions role that pushes gateway and engine images."
  value       = one(module.ci[*].push_role_arn)
}

output "karpenter_helm_command" {
  description = "Karpenter mode: installs the controller with the values above. Null in Auto Mode."
  value = var.compute_mode != "karpenter" ? null : join(" ", [
    "helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter",
    "--version ${local.karpenter_version} --namespace kube-system",
    "--set settings.clusterName=${module.eks.cluster_name}",
    "--set settings.interruptionQueue=${module.karpenter[0].interruption_queue_name}",
    "--wait",
  ])
}
