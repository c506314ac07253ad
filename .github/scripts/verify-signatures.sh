#!/usr/bin/env bash
# Every image of the release was signed by images.yml on main of this repository (keyless cosign).
# Environment: IMAGES (images.yml's JSON), SIGNER (the certificate identity that must have signed).
set -euo pipefail
: "${IMAGES:?}" "${SIGNER:?}"
for key in gateway engine-gpu; do
  ref="$(jq -er --arg k "$key" '.[$k]' <<<"$IMAGES")"
  case "$ref" in *@sha256:*) ;; *) echo "::error::$key is not pinned to a digest: $ref"; exit 1 ;; esac
  cosign verify --certificate-identity "$SIGNER" \
    --certificate-oidc-issuer https://token.actions.githubusercontent.com "$ref" > /dev/null
  echo "verified $ref"
done
