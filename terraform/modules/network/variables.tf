variable "name" {
  description = "Name prefix for every resource (usually the cluster name)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3-40 characters of lowercase letters, digits and dashes."
  }
}

variable "cluster_name" {
  description = "EKS cluster that will use this VPC: private subnets get `karpenter.sh/discovery = <cluster_name>`."
  type        = string
}

variable "cidr" {
  description = "VPC CIDR. Private subnets get a /4 slice each (a /20 from a /16): pods take VPC IPs, so they are large."
  type        = string
  default     = "10.0.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && tonumber(split("/", var.cidr)[1]) >= 16 && tonumber(split("/", var.cidr)[1]) <= 20
    error_message = "cidr must be a valid IPv4 CIDR between /16 and /20."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread subnets over. GPU capacity is scarce per AZ: more AZs, more chances."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 (EKS minimum) and 4."
  }
}

variable "availability_zones" {
  description = "AZ names to use, pinned (recommended once a region is chosen: the list then never changes under you). Null takes the first az_count zones of the region."
  type        = list(string)
  default     = null

  validation {
    condition     = var.availability_zones == null ? true : length(distinct(var.availability_zones)) == var.az_count && length(var.availability_zones) == var.az_count
    error_message = "availability_zones must list az_count distinct zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper, one AZ failure cuts egress) instead of one per AZ."
  type        = bool
  default     = false
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints instead of NAT. ECR keeps image pulls (GBs for vLLM) off NAT data charges; S3 always gets a free gateway endpoint."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr"]

  validation {
    condition     = alltrue([for s in var.interface_endpoints : can(regex("^[a-z0-9.-]+$", s))])
    error_message = "interface_endpoints are service suffixes such as ecr.api, ecr.dkr, sts."
  }
}

variable "flow_log_retention_days" {
  description = "Days to keep VPC flow logs (REJECT records only) in CloudWatch. 0 disables flow logs."
  type        = number
  default     = 30

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be 0 or a CloudWatch retention value (1, 3, 5, 7, 14, 30, ...)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
