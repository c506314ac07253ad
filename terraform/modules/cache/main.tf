# Shared state for the gateway replicas (limits, budgets, idempotency, usage) in ElastiCache for
# Valkey: an option for teams that want it managed. The default is the in-cluster Redis the k8s
# side runs (inferstack-redis:6379); this module is used only with elasticache_enabled = true.
# Reachable only from the cluster's nodes, TLS in transit, encrypted at rest, Multi-AZ with a replica.

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "${var.name}: gateway shared state"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_security_group" "this" {
  name        = "${var.name}-cache"
  description = "${var.name}: Valkey, from the cluster's nodes only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_nodes" {
  count = length(var.client_security_group_ids) # count, not for_each: the node SG id is known only after apply

  security_group_id            = aws_security_group.this.id
  description                  = "Valkey from the cluster's nodes"
  referenced_security_group_id = var.client_security_group_ids[count.index]
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
}

locals {
  port = 6379
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "${var.name}: gateway shared state"
  engine               = "valkey"
  engine_version       = var.engine_version
  node_type            = var.node_type
  num_cache_clusters   = var.replicas + 1
  port                 = local.port

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.this.id]

  automatic_failover_enabled = var.replicas > 0
  multi_az_enabled           = var.replicas > 0
  transit_encryption_enabled = true
  at_rest_encryption_enabled = true
  snapshot_retention_limit   = 1
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = var.tags
}
