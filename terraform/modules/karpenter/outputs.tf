output "controller_role_arn" {
  description = "IAM role of the Karpenter controller (bound to its service account by Pod Identity)."
  value       = aws_iam_role.controller.arn
}

output "node_role_name" {
  description = "IAM role for Karpenter nodes: the EC2NodeClass `spec.role`."
  value       = aws_iam_role.node.name
}

output "node_role_arn" {
  description = "ARN of the Karpenter node role."
  value       = aws_iam_role.node.arn
}

output "interruption_queue_name" {
  description = "SQS queue for interruption events: the chart's `settings.interruptionQueue`."
  value       = aws_sqs_queue.interruption.name
}

output "interruption_queue_arn" {
  description = "ARN of the interruption queue."
  value       = aws_sqs_queue.interruption.arn
}

output "service_account" {
  description = "Namespace/name the controller's Pod Identity association expects."
  value       = "${var.namespace}/${var.service_account}"
}
