"""run.py's checks before any traffic (the full runs are in test_live.py)."""

import importlib.util
from pathlib import Path

import pytest

from llmload.profile import LOADTESTS

spec = importlib.util.spec_from_file_location("loadtest_run", LOADTESTS / "run.py")
assert spec and spec.loader
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


def test_a_bad_profile_exits_2_without_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(["--profile", "nope", "--host", "http://127.0.0.1:9"]) == run.EXIT_BAD_CONFIG
    assert "unknown profile 'nope'" in capsys.readouterr().err


def test_a_bad_slo_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "slo.yaml"
    bad.write_text("latency: {max: 1}")
    assert run.main(["--slo", str(bad)]) == run.EXIT_BAD_CONFIG


def test_host_and_profile_come_from_make_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "https://llm.example.com")
    monkeypatch.setenv("PROFILE", "step")
    args, extra = run.parse_args(["--", "--processes", "4"])
    assert (args.host, args.profile, extra) == ("https://llm.example.com", "step", ["--processes", "4"])
