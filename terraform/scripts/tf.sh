#!/usr/bin/env bash
# Run terraform with a provider source that works here and on a laptop, with nothing to edit:
#   - the filesystem mirror of hashicorp/aws at /opt/tf-plugins (or $TF_PROVIDER_MIRROR) when it
#     exists: air-gapped machines and CI images with the provider baked in;
#   - otherwise the public registry.
# Either way through a shared plugin cache, so every module folder links to one ~700 MB provider
# instead of holding its own copy. A CLI config of your own (TF_CLI_CONFIG_FILE naming a file that
# exists) always wins and is used unchanged.
#
# Usage: terraform/scripts/tf.sh <terraform arguments>    (exactly like `terraform`)
set -euo pipefail

if [[ -z "${TF_CLI_CONFIG_FILE:-}" || ! -f "${TF_CLI_CONFIG_FILE}" ]]; then
  mirror="${TF_PROVIDER_MIRROR:-/opt/tf-plugins}"
  state_dir="${XDG_CACHE_HOME:-$HOME/.cache}/inferstack"
  cache_dir="${TF_PLUGIN_CACHE_DIR:-$state_dir/terraform-plugins}"
  mkdir -p "$state_dir" "$cache_dir"

  if [[ -d "$mirror/registry.terraform.io/hashicorp/aws" ]]; then
    installation="provider_installation {
  filesystem_mirror {
    path    = \"$mirror\"
    include = [\"registry.terraform.io/hashicorp/aws\"]
  }
  direct {
    exclude = [\"registry.terraform.io/hashicorp/aws\"]
  }
}"
  else
    installation="provider_installation {
  direct {}
}"
  fi

  rc="$state_dir/terraformrc"
  tmp="$(mktemp "$rc.XXXXXX")"
  printf 'plugin_cache_dir = "%s"\n%s\n' "$cache_dir" "$installation" >"$tmp"
  mv -f "$tmp" "$rc" # atomic: the tests run several terraform processes at once
  export TF_CLI_CONFIG_FILE="$rc"
  # Link from the cache even when a lock file only lists hashes for other platforms.
  export TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE=1
fi

exec terraform "$@"
