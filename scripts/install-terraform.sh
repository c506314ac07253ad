#!/usr/bin/env bash
# Terraform >= 1.10 for terraform/ (S3 native state locking, mock providers in `terraform test`).
# Idempotent: does nothing when a recent enough terraform is on PATH. Installs from HashiCorp's
# Debian/Ubuntu apt repository otherwise. The aws provider itself is fetched by terraform/scripts/tf.sh
# (from /opt/tf-plugins when that mirror exists, from the registry otherwise).
set -euo pipefail

required="1.10"

if command -v terraform >/dev/null 2>&1; then
  have="$(terraform version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([0-9.]*\)".*/\1/p')"
  if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$required" "$have" | sort -V | head -n1)" = "$required" ]; then
    echo "terraform $have already installed"
    exit 0
  fi
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

. /etc/os-release
codename="${VERSION_CODENAME:-${UBUNTU_CODENAME:-}}"
if ! command -v apt-get >/dev/null 2>&1 || [ -z "$codename" ]; then
  echo "install terraform >= $required by hand: https://developer.hashicorp.com/terraform/install" >&2
  exit 1
fi

$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends ca-certificates curl gnupg
keyring=/usr/share/keyrings/hashicorp-archive-keyring.gpg
if [ ! -s "$keyring" ]; then
  curl -fsSL https://apt.releases.hashicorp.com/gpg | $sudo gpg --dearmor -o "$keyring"
fi
echo "deb [signed-by=$keyring] https://apt.releases.hashicorp.com $codename main" |
  $sudo tee /etc/apt/sources.list.d/hashicorp.list >/dev/null
$sudo apt-get update -q
$sudo apt-get install -y -q terraform
terraform version
