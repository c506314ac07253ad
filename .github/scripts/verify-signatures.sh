#!/usr/bin/env bash
# Every image of the release was signed by images.yml on main of this repository (keyless cosign):
# ours after their scan and push, each third-party mirror after its scan and copy (mirror.py sign).
# Every key of images.json is checked, at the exact <repository>@<digest> release.py deploys.
# Environment: IMAGES (images.yml's JSON), SIGNER (the certificate identity that must have signed).
set -euo pipefail
: "${IMAGES:?}" "${SIGNER:?}"
ISSUER=https://token.actions.githubusercontent.com
jq -e 'has("gateway") and has("engine-gpu")' <<<"$IMAGES" > /dev/null \
  || { echo "::error::IMAGES lacks gateway or engine-gpu"; exit 1; }
keys="$(jq -er 'keys[]' <<<"$IMAGES")"
for key in $keys; do
  ref="$(jq -er --arg k "$key" '.[$k]' <<<"$IMAGES")"
  case "$ref" in *@sha256:*) ;; *) echo "::error::$key is not pinned to a digest: $ref"; exit 1 ;; esac
  cosign verify --certificate-identity "$SIGNER" --certificate-oidc-issuer "$ISSUER" "$ref" > /dev/null
  echo "verified $key: $ref"
done
