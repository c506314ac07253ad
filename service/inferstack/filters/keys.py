"""API keys: how they are made, hashed and listed in the key file.

A key is 32 random bytes (``isk-`` + base64url), shown once. Only its SHA-256 is stored. A plain hash
is enough for a 256-bit random secret (a slow KDF protects low-entropy passwords, not these), and it
keeps the check to a microsecond.

Key file (YAML; can be a mounted Kubernetes Secret)::

    keys:
      - key_sha256: 3f1c...          # hex SHA-256 of the key
        tenant: acme
        name: ci                     # optional, for people; never a label
        models: "*"                  # or a list of model names
        rpm: 600                     # requests per minute; omit for no limit
        tpm: 200000                  # prompt + completion tokens per minute
        max_concurrency: 16
        monthly_budget_usd: 50       # per tenant: every key of a tenant must agree
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

KEY_PREFIX = "isk-"


def generate_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyEntry(BaseModel):
    """One key as the key file lists it. ``None`` limits mean unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = ""
    models: Literal["*"] | frozenset[str] = "*"
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    monthly_budget_usd: float | None = Field(None, ge=0)
    routing_override: bool = False
    """May choose a scheduling profile (``x-inferstack-routing-policy``) where the gateway refuses it to
    other keys (``routing.allow_override`` off): an operator's key for routing experiments."""

    @field_validator("key_sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def key_id(self) -> str:
        """Safe to log and to use in storage keys: a prefix of the hash, not of the key."""
        return self.key_sha256[:12]

    def allows(self, model: str) -> bool:
        return self.models == "*" or model in self.models


class KeyFileError(ValueError):
    """The key file is unreadable or invalid. The message never contains key material."""


@dataclass(frozen=True)
class KeyRing:
    """An immutable snapshot of the key file: swapped whole on reload, so readers never see half of one."""

    by_hash: Mapping[str, KeyEntry]
    budgets: Mapping[str, float | None]

    @property
    def tenants(self) -> frozenset[str]:
        return frozenset(self.budgets)

    @classmethod
    def empty(cls) -> KeyRing:
        return cls({}, {})


def parse_keys(text: str) -> KeyRing:
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeyFileError(f"not valid YAML (line {_line(exc)})") from None
    raw = (document or {}).get("keys", []) if isinstance(document, dict) else None
    if not isinstance(raw, list):
        raise KeyFileError("expected a mapping with a 'keys' list")
    by_hash: dict[str, KeyEntry] = {}
    budgets: dict[str, float | None] = {}
    for index, item in enumerate(raw):
        try:
            entry = KeyEntry.model_validate(item)
        except ValidationError as exc:
            # Name the fields, never the values: a value may be a key pasted in the wrong place.
            fields = sorted({".".join(str(p) for p in e["loc"]) or "entry" for e in exc.errors()})
            raise KeyFileError(f"keys[{index}]: invalid {', '.join(fields)}") from None
        if entry.key_sha256 in by_hash:
            raise KeyFileError(f"keys[{index}]: duplicate key_sha256")
        if entry.tenant in budgets and budgets[entry.tenant] != entry.monthly_budget_usd:
            raise KeyFileError(f"keys[{index}]: tenant {entry.tenant} has two different monthly budgets")
        by_hash[entry.key_sha256] = entry
        budgets[entry.tenant] = entry.monthly_budget_usd
    return KeyRing(by_hash, budgets)


def _line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return str(mark.line + 1) if mark is not None else "?"


def entry_yaml(entry: KeyEntry) -> str:
    """The entry as a key-file list item (what ``inferstack keys create`` prints)."""
    data: dict[str, Any] = {"key_sha256": entry.key_sha256, "tenant": entry.tenant}
    if entry.name:
        data["name"] = entry.name
    data["models"] = "*" if entry.models == "*" else sorted(entry.models)
    for field in ("rpm", "tpm", "max_concurrency", "monthly_budget_usd"):
        value = getattr(entry, field)
        if value is not None:
            data[field] = value
    if entry.routing_override:
        data["routing_override"] = True
    return str(yaml.safe_dump([data], sort_keys=False))


def write_dev_keyfile(path: Path, tenant: str = "dev") -> str:
    """For ``make up``: a key file with one fresh unlimited key; returns the key to print."""
    key = generate_key()
    entry = KeyEntry(key_sha256=hash_key(key), tenant=tenant, name="local development")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("keys:\n" + _indent(entry_yaml(entry)))
    return key


def _indent(text: str) -> str:
    return "".join("  " + line if line.strip() else line for line in text.splitlines(keepends=True))
