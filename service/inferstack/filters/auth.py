"""Authentication: ``Authorization: Bearer <key>`` -> the caller's ``Principal``.

401 for a missing or unknown key, 403 for a model the key may not use. Messages never echo the key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ..errors import AuthenticationError, PermissionDeniedError
from .keys import KeyEntry, KeyRing, hash_key

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant, the key's id (a hash prefix, safe to log) and its limits."""

    tenant: str
    key_id: str
    entry: KeyEntry | None  # None: auth is off, no limits


ANONYMOUS_PRINCIPAL = Principal(ANONYMOUS, "", None)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def authenticate(ring: KeyRing, authorization: str | None, model: str) -> Principal:
    token = bearer_token(authorization)
    if token is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    digest = hash_key(token)
    entry = ring.by_hash.get(digest)
    # The dict lookup's timing can only reveal bits of SHA-256(attempt), which does not help anyone
    # find a 256-bit key; the final comparison is constant-time all the same.
    if entry is None or not hmac.compare_digest(entry.key_sha256, digest):
        raise AuthenticationError("Incorrect API key provided.")
    if not entry.allows(model):
        raise PermissionDeniedError(f"This key may not use the model '{model}'.", param="model")
    return Principal(entry.tenant, entry.key_id, entry)


def check_admin(admin_key_sha256: str, authorization: str | None) -> None:
    """The admin endpoint's check: one configured key, stored as its SHA-256."""
    token = bearer_token(authorization)
    if not admin_key_sha256 or token is None or not hmac.compare_digest(hash_key(token), admin_key_sha256.lower()):
        raise AuthenticationError("An admin key is required.")
