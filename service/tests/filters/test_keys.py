"""Keys: generation, the key file, authentication, reload without restart, the CLI."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from inferstack.errors import AuthenticationError, PermissionDeniedError
from inferstack.filters.auth import authenticate, check_admin
from inferstack.filters.filewatch import WatchedFile
from inferstack.filters.keys import KeyFileError, KeyRing, generate_key, hash_key, parse_keys, write_dev_keyfile
from inferstack.filters.keys_cli import main as keys_main


def keyfile(*entries: dict[str, object]) -> str:
    return yaml.safe_dump({"keys": list(entries)})


def test_generated_keys_are_distinct_and_high_entropy() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("isk-") and len(k) == 4 + 43 for k in keys)  # 32 bytes, base64url


def test_authenticate_maps_a_key_to_its_tenant_and_checks_the_model() -> None:
    key = generate_key()
    ring = parse_keys(keyfile({"key_sha256": hash_key(key), "tenant": "acme", "models": ["m1"]}))
    principal = authenticate(ring, f"Bearer {key}", "m1")
    assert principal.tenant == "acme" and principal.key_id == hash_key(key)[:12]
    with pytest.raises(PermissionDeniedError) as denied:
        authenticate(ring, f"Bearer {key}", "m2")
    assert denied.value.status == 403


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer isk-wrong"])
def test_missing_or_wrong_keys_get_401_without_echoing_the_key(header: str | None) -> None:
    ring = parse_keys(keyfile({"key_sha256": hash_key(generate_key()), "tenant": "acme"}))
    with pytest.raises(AuthenticationError) as caught:
        authenticate(ring, header, "m")
    assert caught.value.status == 401
    assert "isk-" not in str(caught.value.to_body())


def test_key_file_errors_name_fields_never_values() -> None:
    secret = generate_key()
    with pytest.raises(KeyFileError) as caught:
        parse_keys(keyfile({"key_sha256": secret, "tenant": "acme"}))  # a key pasted where its hash goes
    assert secret not in str(caught.value) and "key_sha256" in str(caught.value)
    with pytest.raises(KeyFileError, match="two different monthly budgets"):
        parse_keys(
            keyfile(
                {"key_sha256": "a" * 64, "tenant": "t", "monthly_budget_usd": 1},
                {"key_sha256": "b" * 64, "tenant": "t", "monthly_budget_usd": 2},
            )
        )


def test_admin_key_is_checked_against_its_hash() -> None:
    admin = generate_key()
    check_admin(hash_key(admin), f"Bearer {admin}")
    for bad in (None, f"Bearer {generate_key()}"):
        with pytest.raises(AuthenticationError):
            check_admin(hash_key(admin), bad)
    with pytest.raises(AuthenticationError):
        check_admin("", f"Bearer {admin}")  # no admin key configured: the endpoint is closed


def test_reload_picks_up_edits_and_keeps_the_last_good_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(keyfile({"key_sha256": "a" * 64, "tenant": "one"}))
    watched = WatchedFile(str(path), parse_keys, "key file")
    assert watched.value.tenants == {"one"}
    assert watched.poll() is False
    path.write_text(keyfile({"key_sha256": "a" * 64, "tenant": "two"}))
    assert watched.poll() is True and watched.value.tenants == {"two"}
    path.write_text("keys: [ {broken")
    assert watched.poll() is False and watched.value.tenants == {"two"} and watched.errors == 1


def test_reload_follows_a_kubernetes_secret_symlink_swap(tmp_path: Path) -> None:
    """A Secret volume: keys.yaml -> ..data/keys.yaml, ..data -> ..<timestamp>; updates swap ..data."""
    mount = tmp_path / "secret"
    mount.mkdir()
    first, second = mount / "..2024_01", mount / "..2024_02"
    for d, tenant in ((first, "old"), (second, "new")):
        d.mkdir()
        (d / "keys.yaml").write_text(keyfile({"key_sha256": "c" * 64, "tenant": tenant}))
    os.symlink(first.name, mount / "..data")
    os.symlink("..data/keys.yaml", mount / "keys.yaml")
    watched = WatchedFile(str(mount / "keys.yaml"), parse_keys, "key file")
    assert watched.value.tenants == {"old"}
    os.symlink(second.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")  # what kubelet does: an atomic rename
    assert watched.poll() is True and watched.value.tenants == {"new"}


def test_a_missing_key_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key file"):
        WatchedFile(str(tmp_path / "absent.yaml"), parse_keys, "key file")


def test_cli_prints_the_key_once_and_an_entry_that_authenticates() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert (
            keys_main(
                [
                    "create",
                    "--tenant",
                    "acme",
                    "--models",
                    "m1,m2",
                    "--rpm",
                    "60",
                    "--tpm",
                    "1000",
                    "--monthly-budget-usd",
                    "5",
                ]
            )
            == 0
        )
    text = out.getvalue()
    key = text.split("store it now): ")[1].split()[0]
    entry_text = text.split("in the key file:\n\n")[1]
    assert hash_key(key) in entry_text and key not in entry_text
    ring = parse_keys("keys:\n" + "".join("  " + line for line in entry_text.splitlines(keepends=True)))
    principal = authenticate(ring, f"Bearer {key}", "m2")
    assert principal.entry is not None and principal.entry.rpm == 60 and principal.entry.monthly_budget_usd == 5
    assert not principal.entry.routing_override and "routing_override" not in entry_text


def test_cli_grants_a_routing_override_that_the_entry_carries() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert keys_main(["create", "--tenant", "ops", "--routing-override"]) == 0
    text = out.getvalue()
    key = text.split("store it now): ")[1].split()[0]
    entry_text = text.split("in the key file:\n\n")[1]
    ring = parse_keys("keys:\n" + "".join("  " + line for line in entry_text.splitlines(keepends=True)))
    principal = authenticate(ring, f"Bearer {key}", "any-model")
    assert principal.entry is not None and principal.entry.routing_override


def test_dev_keyfile_holds_a_working_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "keys.yaml"
    key = write_dev_keyfile(path)
    assert path.stat().st_mode & 0o777 == 0o600
    ring: KeyRing = parse_keys(path.read_text())
    assert authenticate(ring, f"Bearer {key}", "any-model").tenant == "dev"
