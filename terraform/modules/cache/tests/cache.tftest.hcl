mock_provider "aws" {
  source = "../../tests/mocks"
}

override_resource {
  target          = aws_elasticache_replication_group.this
  override_during = plan
  values = {
    primary_endpoint_address = "master.inferstack-test.abc123.use1.cache.amazonaws.com"
  }
}

variables {
  name                      = "inferstack-test"
  vpc_id                    = "vpc-0123456789abcdef0"
  subnet_ids                = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  client_security_group_ids = ["sg-0123456789abcdef0"]
}

run "private_encrypted_highly_available" {
  command = plan

  assert {
    condition     = aws_elasticache_replication_group.this.engine == "valkey" && aws_elasticache_replication_group.this.transit_encryption_enabled && aws_elasticache_replication_group.this.at_rest_encryption_enabled
    error_message = "Valkey, TLS in transit, encrypted at rest."
  }

  assert {
    condition     = aws_elasticache_replication_group.this.num_cache_clusters == 2 && aws_elasticache_replication_group.this.multi_az_enabled
    error_message = "A replica in another AZ with automatic failover by default."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.from_nodes[*].referenced_security_group_id == ["sg-0123456789abcdef0"]
    error_message = "Only the nodes may connect."
  }

  assert {
    condition     = output.redis_url == "rediss://master.inferstack-test.abc123.use1.cache.amazonaws.com:6379"
    error_message = "The gateway's INFERSTACK_REDIS_URL, with TLS."
  }
}
