# What kubectl, the Kubernetes overlay (k8s/overlays/aws-gpu) and the pipeline read: modules/platform's
# outputs of the same name (described there; terraform/README.md says who reads which). dev and prod
# declare exactly the same list (terraform/tests checks it).

output "cluster_name" { value = module.platform.cluster_name }
output "cluster_endpoint" { value = module.platform.cluster_endpoint }
output "update_kubeconfig_command" { value = module.platform.update_kubeconfig_command }
output "compute_mode" { value = module.platform.compute_mode }
output "region" { value = var.region }
output "namespace" { value = module.platform.namespace }
output "karpenter_node_role_name" { value = module.platform.karpenter_node_role_name }
output "karpenter_interruption_queue_name" { value = module.platform.karpenter_interruption_queue_name }
output "karpenter_controller_role_arn" { value = module.platform.karpenter_controller_role_arn }
output "karpenter_discovery_tag" { value = module.platform.karpenter_discovery_tag }
output "node_security_group_id" { value = module.platform.node_security_group_id }
output "private_subnet_ids" { value = module.platform.private_subnet_ids }
output "gpu_instance_types" { value = module.platform.gpu_instance_types }
output "engine_resources" { value = module.platform.engine_resources }
output "karpenter_version" { value = module.platform.karpenter_version }
output "ecr_gateway_url" { value = module.platform.ecr_gateway_url }
output "ecr_engine_url" { value = module.platform.ecr_engine_url }
output "models_bucket_name" { value = module.platform.models_bucket_name }
output "engine_role_arn" { value = module.platform.engine_role_arn }
output "gateway_role_arn" { value = module.platform.gateway_role_arn }
output "ci_plan_role_arn" { value = module.platform.ci_plan_role_arn }
output "ci_apply_role_arn" { value = module.platform.ci_apply_role_arn }
output "karpenter_helm_command" { value = module.platform.karpenter_helm_command }
output "lb_controller_role_arn" { value = module.platform.lb_controller_role_arn }
output "acm_certificate_arn" { value = module.platform.acm_certificate_arn }
output "acm_validation_records" { value = module.platform.acm_validation_records }
output "gateway_url" { value = module.platform.gateway_url }
output "redis_url" { value = module.platform.redis_url }
