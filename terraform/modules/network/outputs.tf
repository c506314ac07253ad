output "vpc_id" {
  description = "VPC ID."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "VPC CIDR block."
  value       = aws_vpc.this.cidr_block
}

output "azs" {
  description = "Availability zones used, in subnet order."
  value       = local.azs
}

output "private_subnet_ids" {
  description = "Private subnets (one per AZ): EKS control-plane ENIs, nodes and pods."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "Public subnets (one per AZ): NAT gateways and internet-facing load balancers."
  value       = aws_subnet.public[*].id
}

output "nat_public_ips" {
  description = "Egress IPs of the NAT gateways (allow-list these on model hubs or registries)."
  value       = aws_eip.nat[*].public_ip
}
