# Interruption handling: EventBridge forwards spot interruption warnings, rebalance recommendations,
# scheduled health events and instance state changes to a queue Karpenter polls, so it can cordon,
# drain and replace a GPU node before AWS takes it away (spot gives two minutes' notice).

resource "aws_sqs_queue" "interruption" {
  name                      = var.cluster_name
  message_retention_seconds = var.queue_message_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue_policy" "interruption" {
  queue_url = aws_sqs_queue.interruption.url
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EventBridgeWrites"
        Effect    = "Allow"
        Principal = { Service = ["events.amazonaws.com", "sqs.amazonaws.com"] }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.interruption.arn
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = aws_sqs_queue.interruption.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

locals {
  interruption_events = {
    health_event = {
      description = "AWS Health scheduled changes (instance retirement, maintenance)"
      pattern     = { source = ["aws.health"], "detail-type" = ["AWS Health Event"] }
    }
    spot_interruption = {
      description = "EC2 spot interruption warning (two minutes' notice)"
      pattern     = { source = ["aws.ec2"], "detail-type" = ["EC2 Spot Instance Interruption Warning"] }
    }
    rebalance = {
      description = "EC2 rebalance recommendation (elevated spot interruption risk)"
      pattern     = { source = ["aws.ec2"], "detail-type" = ["EC2 Instance Rebalance Recommendation"] }
    }
    instance_state_change = {
      description = "EC2 instance state change (stopping, terminated, ...)"
      pattern     = { source = ["aws.ec2"], "detail-type" = ["EC2 Instance State-change Notification"] }
    }
  }
}

resource "aws_cloudwatch_event_rule" "interruption" {
  for_each = local.interruption_events

  # Rule names are limited to 64 characters.
  name          = substr("${var.cluster_name}-karpenter-${replace(each.key, "_", "-")}", 0, 64)
  description   = each.value.description
  event_pattern = jsonencode(each.value.pattern)
  tags          = var.tags
}

resource "aws_cloudwatch_event_target" "interruption" {
  for_each = local.interruption_events

  rule      = aws_cloudwatch_event_rule.interruption[each.key].name
  target_id = "KarpenterInterruptionQueue"
  arn       = aws_sqs_queue.interruption.arn
}
