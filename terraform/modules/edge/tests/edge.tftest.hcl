mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  domain_name = "api.example.com"
}

run "certificate_for_the_domain" {
  command = plan

  assert {
    condition     = aws_acm_certificate.this.domain_name == "api.example.com" && aws_acm_certificate.this.validation_method == "DNS"
    error_message = "A DNS-validated certificate for the gateway's name."
  }

  assert {
    condition     = output.url == "https://api.example.com"
    error_message = "The URL the README's steps print."
  }

  assert {
    condition     = length(aws_acm_certificate_validation.this) == 0
    error_message = "Without a zone the validation records are left to the user (no waiting for a validation that cannot happen)."
  }
}

run "validates_in_route53" {
  command = plan

  # The real provider knows the validation domains at plan time; the mock does not.
  override_resource {
    target          = aws_acm_certificate.this
    override_during = plan
    values = {
      arn = "arn:aws:acm:us-east-1:123456789012:certificate/0d0e0a0d-0000-4000-8000-000000000000"
      domain_validation_options = [{
        domain_name           = "api.example.com"
        resource_record_name  = "_x1.api.example.com."
        resource_record_type  = "CNAME"
        resource_record_value = "_x2.acm-validations.aws."
      }]
    }
  }

  variables {
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
  }

  assert {
    condition     = length(aws_acm_certificate_validation.this) == 1 && aws_route53_record.validation["api.example.com"].name == "_x1.api.example.com." && aws_route53_record.validation["api.example.com"].zone_id == "Z0123456789ABCDEFGHIJ"
    error_message = "With a zone, the validation record is created there and the certificate is validated here."
  }
}

run "rejects_a_bad_name" {
  command = plan

  variables {
    domain_name = "https://api.example.com"
  }

  expect_failures = [var.domain_name]
}
