# The gateway's public HTTPS name: an ACM certificate for domain_name, validated by DNS. The load
# balancer itself is made in the cluster (Auto Mode's built-in ALB, or the AWS Load Balancer
# Controller in Karpenter mode) from the gateway's Ingress, which names this certificate. With a
# Route 53 zone the validation records are created here; otherwise add validation_records to your DNS.

resource "aws_acm_certificate" "this" {
  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = var.tags

  lifecycle {
    create_before_destroy = true # a renamed domain gets its new certificate before the old one goes
  }
}

locals {
  validation_records = { for o in aws_acm_certificate.this.domain_validation_options : o.domain_name => {
    name  = o.resource_record_name
    type  = o.resource_record_type
    value = o.resource_record_value
  } }
}

resource "aws_route53_record" "validation" {
  for_each = var.route53_zone_id == null ? {} : local.validation_records

  zone_id         = var.route53_zone_id
  name            = each.value.name
  type            = each.value.type
  records         = [each.value.value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "this" {
  count = var.route53_zone_id == null ? 0 : 1

  certificate_arn         = aws_acm_certificate.this.arn
  validation_record_fqdns = [for r in aws_route53_record.validation : r.fqdn]
}
