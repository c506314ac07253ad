output "redis_url" {
  description = "INFERSTACK_REDIS_URL for the gateway (TLS: rediss://)."
  value       = "rediss://${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.port}"
}

output "security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.this.id
}
