# What kubectl, the Kubernetes overlay (k8s/overlays/aws-gpu) and the pipeline need; envs/<env>/outputs.tf
# passes each of these through under the same name (terraform/README.md lists who reads which).

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

output "namespace" {
  description = "Namespace of the gateway and engines (Pod Identity associations point at it)."
  value       = var.namespace
}

output "karpenter_node_role_name" {
  description = "IAM role of GPU nodes: NodeClass / EC2NodeClass `spec.role` (Auto Mode node role in auto mode)."
  value       = var.compute_mode == "karpenter" ? module.karpenter[0].node_role_name : module.eks.auto_mode_node_role_name
}

output "karpenter_interruption_queue_name" {
  description = "Karpenter chart `settings.interruptionQueue`. Null in Auto Mode (AWS handles interruptions)."
  value       = one(module.karpenter[*].interruption_queue_name)
}

output "karpenter_controller_role_arn" {
  description = "Karpenter controller role (already bound to kube-system/karpenter by Pod Identity). Null in Auto Mode."
  value       = one(module.karpenter[*].controller_role_arn)
}

output "karpenter_discovery_tag" {
  description = "Tag on private subnets and the node security group: NodeClass subnet/securityGroup selector terms."
  value       = { "karpenter.sh/discovery" = module.eks.cluster_name }
}

output "karpenter_version" {
  description = "Karpenter release of the controller and karpenter-crd charts (the controller policy in modules/karpenter is written for it)."
  value       = var.karpenter_version
}

output "karpenter_helm_command" {
  description = "Karpenter mode: installs the controller with the values above. Null in Auto Mode."
  # CRDs from the karpenter-crd chart (Helm upgrades them; the controller chart installs CRDs only once).
  value = var.compute_mode != "karpenter" ? null : join(" ", [
    "helm upgrade --install karpenter-crd oci://public.ecr.aws/karpenter/karpenter-crd",
    "--version ${var.karpenter_version} --namespace kube-system &&",
    "helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter --skip-crds",
    "--version ${var.karpenter_version} --namespace kube-system",
    "--set settings.clusterName=${module.eks.cluster_name}",
    "--set settings.interruptionQueue=${module.karpenter[0].interruption_queue_name}",
    "--wait",
  ])
}

output "node_security_group_id" {
  description = "Security group of all nodes (EKS cluster security group)."
  value       = module.eks.node_security_group_id
}

output "system_node_group_name" {
  description = "Karpenter mode: the managed node group Karpenter and the critical add-ons run on. Null in Auto Mode."
  value       = module.eks.system_node_group_name
}

output "vpc_id" {
  description = "VPC of the cluster."
  value       = module.network.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets: the only place nodes run."
  value       = module.network.private_subnet_ids
}

output "nat_public_ips" {
  description = "Egress addresses of the NAT gateways (one, or one per AZ)."
  value       = module.network.nat_public_ips
}

output "gpu_instance_types" {
  description = "GPU NodePool requirement `node.kubernetes.io/instance-type` In [...] (read by the k8s side's cluster values)."
  value       = var.gpu_instance_types

  precondition {
    # lookup, not [t]: `&&` does not short-circuit, so an unknown type would fail with "Invalid index".
    condition = alltrue([for t in var.gpu_instance_types : (
      tonumber(local.engine_resources.cpu) <= lookup(local.gpu_capacity, t, { vcpu = 0 }).vcpu - 1
      && tonumber(trimsuffix(local.engine_resources.memory, "Gi")) <= lookup(local.gpu_capacity, t, { memory_gib = 0 }).memory_gib - 4
    )])
    error_message = "Every gpu_instance_types entry must be in local.gpu_capacity (sizing.tf) and fit the engine's requests (engine_resources) with 1 vCPU / 4 GiB to spare."
  }
}

output "engine_resources" {
  description = "Requests of the engine container (cpu, memory, nvidia.com/gpu); every gpu_instance_types entry fits them."
  value       = local.engine_resources
}

output "ecr_gateway_url" {
  description = "Gateway image repository (terraform/shared: the same for every environment)."
  value       = data.aws_ecr_repository.this["gateway"].repository_url
}

output "ecr_engine_url" {
  description = "Engine (vLLM) image repository (terraform/shared: the same for every environment)."
  value       = data.aws_ecr_repository.this["engine"].repository_url
}

output "models_bucket_name" {
  description = "Model-weights bucket engines read from."
  value       = module.models.bucket_name
}

output "engine_role_arn" {
  description = "Role engine pods get through Pod Identity."
  value       = module.models.engine_role_arn
}

output "engine_service_account" {
  description = "namespace/name of the service account bound to engine_role_arn."
  value       = module.models.engine_service_account
}

output "gateway_role_arn" {
  description = "Role gateway pods get through Pod Identity (the models' tokenizer files only)."
  value       = module.models.gateway_role_arn
}

output "ci_plan_role_arn" {
  description = "GitHub Actions role for terraform plan. Null without github_repository."
  value       = one(module.ci[*].plan_role_arn)
}

output "ci_apply_role_arn" {
  description = "GitHub Actions role for terraform apply and kubectl apply (environment-protected). Null without github_repository."
  value       = one(module.ci[*].apply_role_arn)
}

output "lb_controller_role_arn" {
  description = "Karpenter mode: AWS Load Balancer Controller role, already bound to kube-system/aws-load-balancer-controller by Pod Identity. Null in Auto Mode (built-in ALB, IngressClass controller eks.amazonaws.com/alb)."
  value       = module.eks.lb_controller_role_arn
}

output "acm_certificate_arn" {
  description = "Certificate for the gateway's Ingress (alb.ingress.kubernetes.io/certificate-arn). Null without domain_name."
  value       = one(module.edge[*].certificate_arn)
}

output "acm_validation_records" {
  description = "DNS records validating the certificate (already created when route53_zone_id is set). Null without domain_name."
  value       = one(module.edge[*].validation_records)
}

output "gateway_url" {
  description = "https://<domain_name>; null without domain_name (then the ALB hostname from `kubectl get ingress`)."
  value       = one(module.edge[*].url)
}

output "redis_url" {
  description = "INFERSTACK_REDIS_URL when elasticache_enabled (rediss://...). Null: the in-cluster Redis (redis://inferstack-redis:6379)."
  value       = one(module.cache[*].redis_url)
}
