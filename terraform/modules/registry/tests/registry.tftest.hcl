mock_provider "aws" {
  source = "../../tests/mocks"
}

variables {
  name_prefix = "inferstack-test"
}

run "gateway_and_engine_repositories" {
  command = plan

  assert {
    condition     = toset([for r in aws_ecr_repository.this : r.name]) == toset(["inferstack-test/gateway", "inferstack-test/engine"])
    error_message = "Expected gateway and engine repositories under the prefix."
  }

  assert {
    condition     = alltrue([for r in aws_ecr_repository.this : r.image_tag_mutability == "IMMUTABLE"])
    error_message = "Tags must be immutable: a deployed tag must always mean the same image."
  }

  assert {
    condition     = alltrue([for r in aws_ecr_repository.this : r.image_scanning_configuration[0].scan_on_push])
    error_message = "Images must be scanned on push."
  }

  assert {
    condition     = alltrue([for r in aws_ecr_repository.this : r.encryption_configuration[0].encryption_type == "KMS"])
    error_message = "Images must be encrypted with KMS."
  }

  assert {
    condition     = alltrue([for r in aws_ecr_repository.this : r.force_delete == false])
    error_message = "Repositories holding images must not be deletable by default."
  }
}

run "lifecycle_rules_prune_old_images" {
  command = plan

  assert {
    condition     = length(aws_ecr_lifecycle_policy.this) == 2
    error_message = "Every repository needs a lifecycle policy."
  }

  assert {
    condition = alltrue([for p in aws_ecr_lifecycle_policy.this : (
      jsondecode(p.policy).rules[0].selection.tagStatus == "untagged"
      && jsondecode(p.policy).rules[0].selection.countNumber == 7
      && jsondecode(p.policy).rules[1].selection.tagStatus == "any"
      && jsondecode(p.policy).rules[1].selection.countNumber == 30
    )])
    error_message = "Untagged images expire after 7 days and only the 30 newest images are kept."
  }
}

run "rejects_uppercase_prefix" {
  command = plan

  variables {
    name_prefix = "InferStack"
  }

  expect_failures = [var.name_prefix]
}

run "mirrors_get_the_same_conventions" {
  command = plan

  variables {
    mirrors = ["docker.io/valkey/valkey", "public.ecr.aws/aws-cli/aws-cli"]
  }

  assert {
    condition = toset([for r in aws_ecr_repository.this : r.name]) == toset([
      "inferstack-test/gateway", "inferstack-test/engine",
      "inferstack-test/mirror/docker.io/valkey/valkey", "inferstack-test/mirror/public.ecr.aws/aws-cli/aws-cli",
    ])
    error_message = "Mirrors are <prefix>/mirror/<upstream repository with its host>, beside ours."
  }

  assert {
    condition = alltrue([for k in ["mirror/docker.io/valkey/valkey", "mirror/public.ecr.aws/aws-cli/aws-cli"] : (
      aws_ecr_repository.this[k].image_tag_mutability == "IMMUTABLE"
      && aws_ecr_repository.this[k].image_scanning_configuration[0].scan_on_push
      && aws_ecr_repository.this[k].encryption_configuration[0].encryption_type == "KMS"
      && !aws_ecr_repository.this[k].force_delete
      && jsondecode(aws_ecr_lifecycle_policy.this[k].policy).rules[0].selection.tagStatus == "untagged"
    )])
    error_message = "A mirror is immutable, scanned on push, KMS-encrypted, not force-deletable and pruned like ours."
  }

  assert {
    condition     = keys(output.repository_urls) == ["engine", "gateway"] && keys(output.mirror_repository_arns) == ["docker.io/valkey/valkey", "public.ecr.aws/aws-cli/aws-cli"]
    error_message = "repository_* name our images only; mirror_repository_* the mirrors, by upstream repository."
  }
}

run "rejects_a_mirror_with_a_tag" {
  command = plan

  variables {
    mirrors = ["docker.io/valkey/valkey:8.1.4-alpine"]
  }

  expect_failures = [var.mirrors]
}
