output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_arn" {
  description = "EKS cluster ARN."
  value       = aws_eks_cluster.this.arn
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the API endpoint."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_version" {
  description = "Kubernetes version of the control plane."
  value       = aws_eks_cluster.this.version
}

output "compute_mode" {
  description = "\"auto\" or \"karpenter\": which GPU NodePool / NodeClass flavour the Kubernetes overlay must use."
  value       = var.compute_mode
}

output "node_security_group_id" {
  description = "EKS cluster security group, attached to every node and tagged `karpenter.sh/discovery`."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "oidc_issuer_url" {
  description = "The cluster's OIDC issuer (for IRSA, if a chart cannot use Pod Identity yet)."
  value       = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

output "kms_key_arn" {
  description = "KMS key encrypting Secrets and control-plane logs."
  value       = aws_kms_key.eks.arn
}

output "auto_mode_node_role_name" {
  description = "Auto Mode: IAM role for nodes; put it in the GPU NodeClass `spec.role`. Null in Karpenter mode."
  value       = local.auto_mode ? aws_iam_role.auto_node[0].name : null
}

output "auto_mode_node_role_arn" {
  description = "Auto Mode: ARN of the node IAM role. Null in Karpenter mode."
  value       = local.auto_mode ? aws_iam_role.auto_node[0].arn : null
}

output "system_node_group_name" {
  description = "Karpenter mode: the system managed node group. Null in Auto Mode."
  value       = local.auto_mode ? null : aws_eks_node_group.system[0].node_group_name
}

output "update_kubeconfig_command" {
  description = "Command that points kubectl at this cluster."
  value       = "aws eks update-kubeconfig --region ${local.region} --name ${aws_eks_cluster.this.name}"
}

output "lb_controller_role_arn" {
  description = "Karpenter mode: role of the AWS Load Balancer Controller (kube-system/aws-load-balancer-controller, Pod Identity). Null in Auto Mode (built-in ALB)."
  value       = one(aws_iam_role.lb_controller[*].arn)
}
