# Shared mock data for every `terraform test` run (loaded with `mock_provider "aws" { source = ... }`).
# Values look like a real account in us-east-1 so that ARNs, policies and AZ-derived names built from
# them are realistic; without these the mock provider returns random strings.

mock_data "aws_partition" {
  defaults = {
    id                 = "aws"
    partition          = "aws"
    dns_suffix         = "amazonaws.com"
    reverse_dns_prefix = "com.amazonaws"
  }
}

mock_data "aws_caller_identity" {
  defaults = {
    id         = "123456789012"
    account_id = "123456789012"
    arn        = "arn:aws:iam::123456789012:role/terraform"
    user_id    = "AROAEXAMPLEEXAMPLE:terraform"
  }
}

mock_data "aws_region" {
  defaults = {
    id          = "us-east-1"
    name        = "us-east-1"
    endpoint    = "ec2.us-east-1.amazonaws.com"
    description = "US East (N. Virginia)"
  }
}

mock_data "aws_availability_zones" {
  defaults = {
    id       = "us-east-1"
    names    = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"]
    zone_ids = ["use1-az1", "use1-az2", "use1-az4", "use1-az6"]
  }
}

# Policies in this repo are written with jsonencode() so tests can read them; this default only
# matters if a policy document data source is ever added: random text would fail IAM validation.
mock_data "aws_iam_policy_document" {
  defaults = {
    json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
  }
}

# terraform/shared owns these; the environments look them up.
mock_data "aws_iam_openid_connect_provider" {
  defaults = {
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    url = "token.actions.githubusercontent.com"
  }
}

mock_data "aws_ecr_repository" {
  defaults = {
    arn         = "arn:aws:ecr:us-east-1:123456789012:repository/inferstack/image"
    registry_id = "123456789012"
  }
}
