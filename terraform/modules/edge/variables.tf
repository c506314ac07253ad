variable "domain_name" {
  description = "Public name of the gateway, for example api.example.com."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name such as api.example.com."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name: the DNS validation records are created there. Null: add validation_records to your DNS yourself."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
