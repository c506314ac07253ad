output "certificate_arn" {
  description = "ACM certificate for the gateway's Ingress (`alb.ingress.kubernetes.io/certificate-arn`)."
  value       = aws_acm_certificate.this.arn
}

output "url" {
  description = "The gateway's public URL."
  value       = "https://${var.domain_name}"
}

output "validation_records" {
  description = "DNS records that prove ownership of domain_name (created here when route53_zone_id is set)."
  value       = local.validation_records
}
