"""The install scripts name only files that exist (a missing requirements file fails only on a
machine where that step runs, so nothing else would notice), and say plainly when the disk is too
small for them (scripts/check-disk.sh, scripts/engine-venv.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ._tools import REPO

_NAMED = re.compile(r"(?<![\w$/])(requirements/[\w.-]+\.txt)")


def test_every_requirements_file_a_script_names_exists() -> None:
    named = {
        (script.name, path)
        for script in sorted((REPO / "scripts").rglob("*.sh"))
        for path in _NAMED.findall(script.read_text())
    }
    assert named, "the pattern found nothing: the test would pass vacuously"
    missing = sorted(f"{script}: {path}" for script, path in named if not (REPO / path).is_file())
    assert not missing, missing


def _check_disk(repo: Path, **need_mib: int) -> subprocess.CompletedProcess[str]:
    """scripts/check-disk.sh run as the copy in ``repo`` (so its venvs are ``repo``'s), needs in MiB."""
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "scripts" / "check-disk.sh", repo / "scripts")
    env = {**os.environ, "PODMAN_TEST_STORE": str(repo / "no-store")}
    env.update({f"DISK_NEED_{k.upper()}_MIB": str(v) for k, v in need_mib.items()})
    cmd = ["bash", str(repo / "scripts" / "check-disk.sh"), "test"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=False)


def test_the_disk_check_stops_a_run_whose_venvs_cannot_fit_and_counts_only_missing_ones(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free >> 20
    done = _check_disk(tmp_path, venv=1, engine=free + 1024, images=1)
    assert done.returncode == 1
    assert "installing .venv .venv-engine needs about" in done.stderr, done.stderr
    # An engine venv already installed (its stamp) needs nothing more: the run goes on.
    (tmp_path / ".venv-engine").mkdir()
    (tmp_path / ".venv-engine" / ".installed").write_text("lock-hash\n")
    done = _check_disk(tmp_path, venv=1, engine=free + 1024, images=1)
    assert done.returncode == 0, done.stderr
    assert "this run needs up to about 2 MiB" in done.stderr  # .venv and a cold image store


def test_the_disk_check_only_warns_where_a_cold_image_store_may_not_fit(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free >> 20
    done = _check_disk(tmp_path, venv=1, engine=1, images=free + 1024)
    assert done.returncode == 0, done.stderr
    assert "warning:" in done.stderr and "the image tests build vLLM's CPU image" in done.stderr


def test_engine_venv_reports_a_full_disk_instead_of_trying_another_index(tmp_path: Path) -> None:
    """A torch install that fails for any reason but "not found" is not retried from PyTorch's index
    (stop 24's CI: a full disk, reported as "not found", then a second download into it). The venv is
    made on a 60 MiB tmpfs in a mount namespace of the test's own (gone with the process)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare (util-linux) to mount a small tmpfs in a namespace of its own")
    venv = tmp_path / "small" / "venv"
    venv.parent.mkdir()
    script = f"mount -t tmpfs -o size=60M tmpfs {venv.parent} && exec bash {REPO / 'scripts' / 'engine-venv.sh'}"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "ENGINE_VENV": str(venv), "TORCH_INDEX_URL": "http://127.0.0.1:9/never-asked"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr
    assert "failed (above); free space where it installs:" in done.stderr
    assert "trying http://127.0.0.1:9/never-asked" not in done.stderr
