# Gateway pods read each model's tokenizer files, which sit next to its weights, through EKS Pod
# Identity: the gateway's tokenizer-sync init container (k8s/fleet/generated) copies them so the gateway
# tokenizes requests itself (precise prefix routing, docs/routing.md). Only those files: a gateway
# never needs the weights, and a gateway pod faces the internet.

resource "aws_iam_role" "gateway" {
  name               = "${var.cluster_name}-gateway"
  assume_role_policy = local.pod_identity_trust
  tags               = var.tags
}

resource "aws_iam_role_policy" "gateway_read_tokenizers" {
  name = "read-tokenizer-files"
  role = aws_iam_role.gateway.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      # `aws s3 sync` lists a revision's prefix to find the files it includes: names, not contents.
      local.list_read_prefixes,
      {
        # `*` in an S3 ARN spans slashes: <prefix><model>/<revision>/tokenizer.json, at any depth.
        Sid    = "ReadTokenizerFiles"
        Effect = "Allow"
        Action = "s3:GetObject"
        Resource = flatten([
          for p in var.read_prefixes : [for f in var.tokenizer_files : "${aws_s3_bucket.models.arn}/${p}*/${f}"]
        ])
      },
      local.decrypt_models,
    ]
  })
}

resource "aws_eks_pod_identity_association" "gateway" {
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.gateway_service_account
  role_arn        = aws_iam_role.gateway.arn
  tags            = var.tags
}
