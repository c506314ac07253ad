# prod: the values of record for every apply, by a person or by the pipeline (deploy-env.yml).
# Terraform loads this file automatically. The pipeline sets only what it knows from GitHub
# (TF_VAR_github_repository); everything else is here, so the pipeline's apply never reverts what a
# person applied. Never set here a variable the workflows set: this file would silently win over it.
#
# PLACEHOLDERS (account 111122223333, documentation CIDRs): replace before the first apply.

# bootstrap output state_bucket_name (inferstack-tfstate-<account>-<region>): the CI roles' state access.
state_bucket_name = "inferstack-tfstate-111122223333-us-east-1" # PLACEHOLDER account

region             = "us-east-1"
availability_zones = ["us-east-1a", "us-east-1b", "us-east-1d"]

# The Kubernetes API: office / VPN egress and the deploy runners' static egress IPs. Required in prod.
public_access_cidrs = ["198.51.100.0/24", "203.0.113.0/24"] # PLACEHOLDER documentation ranges (RFC 5737)

admin_principal_arns = [] # e.g. ["arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef"]
