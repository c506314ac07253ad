# ECR repositories for the gateway and engine images, and mirrors of the third-party images the
# clusters run (<prefix>/mirror/<upstream repository>, copied by digest by images.yml after its scan,
# so nodes pull the scanned bytes from our registry, not Docker Hub). One resource for both: the same
# immutable tags (a tag always means the same image, so a rollout is reproducible), scan on push,
# KMS encryption and lifecycle rules (vLLM images are several GB each, billed per GB-month).

locals {
  # Key = path under the prefix. Ours keep their short names (their state addresses predate mirrors).
  repositories = concat(var.repositories, [for m in var.mirrors : "mirror/${m}"])
}

resource "aws_ecr_repository" "this" {
  for_each = toset(local.repositories)

  name                 = "${var.name_prefix}/${each.value}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  for_each = aws_ecr_repository.this

  repository = each.value.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images after ${var.untagged_expiry_days} days"
        selection = {
          tagStatus   = "untagged"
          countType   = "sinceImagePushed"
          countUnit   = "days"
          countNumber = var.untagged_expiry_days
        }
        action = { type = "expire" }
      },
      {
        # tagStatus "any" must be the lowest-priority rule.
        rulePriority = 2
        description  = "Keep the ${var.keep_tagged_images} most recent images"
        selection = {
          tagStatus   = "any"
          countType   = "imageCountMoreThan"
          countNumber = var.keep_tagged_images
        }
        action = { type = "expire" }
      },
    ]
  })
}
