# dev: the values of record for every apply, by a person or by the pipeline (deploy-env.yml).
# Terraform loads this file automatically. The pipeline sets only what it knows from GitHub
# (TF_VAR_github_repository); everything else is here, so the pipeline's apply never reverts what a
# person applied. Never set here a variable the workflows set: this file would silently win over it.
#
# PLACEHOLDERS (account 111122223333): replace before the first apply in your account.

# bootstrap output state_bucket_name (inferstack-tfstate-<account>-<region>): the CI roles' state access.
state_bucket_name = "inferstack-tfstate-111122223333-us-east-1" # PLACEHOLDER account

region             = "us-east-1"
availability_zones = ["us-east-1a", "us-east-1b", "us-east-1d"]

# The Kubernetes API: dev keeps the variable's default (0.0.0.0/0, so GitHub-hosted runners, which have
# no fixed range, can deploy). Narrow it to your office / VPN egress and the runners' static IPs:
# public_access_cidrs = ["198.51.100.0/24"]

# Cluster admins besides whoever runs the first apply, for example an SSO role.
admin_principal_arns = [] # e.g. ["arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef"]
