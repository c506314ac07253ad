mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name         = "inferstack-test"
  cluster_name = "inferstack-test"
}

run "three_azs_private_and_public" {
  command = plan

  assert {
    condition     = length(aws_subnet.private) == 3 && length(aws_subnet.public) == 3
    error_message = "Expected one private and one public subnet per AZ over 3 AZs."
  }

  assert {
    condition     = length(distinct([for s in aws_subnet.private : s.availability_zone])) == 3
    error_message = "Private subnets must be spread over 3 distinct AZs."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.public : s.map_public_ip_on_launch == false])
    error_message = "Nothing launched into public subnets may get a public IP automatically."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.private : s.tags["karpenter.sh/discovery"] == "inferstack-test"])
    error_message = "Private subnets must carry the Karpenter discovery tag with the cluster name."
  }

  assert {
    condition     = alltrue([for s in aws_subnet.public : !contains(keys(s.tags), "karpenter.sh/discovery")])
    error_message = "Public subnets must never be selectable by Karpenter: nodes go in private subnets only."
  }

  assert {
    condition = alltrue([for s in aws_subnet.private : s.tags["kubernetes.io/role/internal-elb"] == "1"]) && alltrue([
    for s in aws_subnet.public : s.tags["kubernetes.io/role/elb"] == "1"])
    error_message = "Load balancer role tags are missing."
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 3
    error_message = "Default is one NAT gateway per AZ."
  }

  assert {
    condition     = aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway"
    error_message = "S3 must use the free gateway endpoint."
  }

  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["ecr.api", "ecr.dkr"])
    error_message = "ECR API and DKR interface endpoints are expected by default."
  }

  assert {
    condition     = aws_vpc_endpoint.interface["ecr.dkr"].service_name == "com.amazonaws.us-east-1.ecr.dkr"
    error_message = "Interface endpoint service names must be built from the current region."
  }

  assert {
    condition     = length(aws_default_security_group.this.ingress) == 0 && length(aws_default_security_group.this.egress) == 0
    error_message = "The default security group must allow nothing."
  }
}

run "subnet_cidrs_do_not_overlap" {
  command = plan

  assert {
    condition     = [for s in aws_subnet.public : s.cidr_block] == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
    error_message = "Public subnets should be /24s at the start of the VPC."
  }

  assert {
    condition     = [for s in aws_subnet.private : s.cidr_block] == ["10.0.16.0/20", "10.0.32.0/20", "10.0.48.0/20"]
    error_message = "Private subnets should be /20s that do not overlap the public block."
  }
}

run "single_nat_gateway" {
  command = plan

  variables {
    single_nat_gateway = true
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_eip.nat) == 1
    error_message = "single_nat_gateway must create exactly one NAT gateway."
  }

  assert {
    condition     = length(aws_route.private_nat) == 3
    error_message = "Every private route table still needs a default route."
  }
}

run "flow_logs_can_be_disabled" {
  command = plan

  variables {
    flow_log_retention_days = 0
    interface_endpoints     = []
  }

  assert {
    condition     = length(aws_flow_log.this) == 0 && length(aws_security_group.endpoints) == 0
    error_message = "Disabled features must create nothing."
  }
}

run "rejects_too_small_vpc" {
  command = plan

  variables {
    cidr = "10.0.0.0/24"
  }

  expect_failures = [var.cidr]
}

run "rejects_single_az" {
  command = plan

  variables {
    az_count = 1
  }

  expect_failures = [var.az_count]
}

run "pinned_availability_zones" {
  command = plan

  variables {
    availability_zones = ["us-east-1b", "us-east-1c", "us-east-1d"]
  }

  assert {
    condition     = [for s in aws_subnet.private : s.availability_zone] == ["us-east-1b", "us-east-1c", "us-east-1d"]
    error_message = "Pinned zones must be used in order."
  }

  assert {
    condition     = length(data.aws_availability_zones.available) == 0
    error_message = "With pinned zones the region's zone list is not read."
  }
}

run "rejects_zone_count_mismatch" {
  command = plan

  variables {
    availability_zones = ["us-east-1a", "us-east-1b"]
  }

  expect_failures = [var.availability_zones]
}
