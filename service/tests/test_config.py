import pytest
from pydantic import ValidationError

from inferstack.cli import main
from inferstack.config import Settings


def test_upstreams_parse_from_a_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSTACK_UPSTREAMS", "http://a:8000/, http://b:8000")
    monkeypatch.setenv("INFERSTACK_TIMEOUTS__CONNECT", "1.5")
    settings = Settings()
    assert settings.upstreams == ["http://a:8000", "http://b:8000"]
    assert settings.timeouts.connect == 1.5


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"INFERSTACK_PORT": "eighty"}, "port"),
        ({"INFERSTACK_UPSTREAMS": "a:8000"}, "upstreams"),
        ({"INFERSTACK_ROUTING_POLICY": "random"}, "routing_policy"),
        ({"INFERSTACK_ROUTING__ADAPTER_POLICY": "random"}, "adapter_policy"),
        ({"INFERSTACK_ROUTING__ADAPTER_POLICY": "precise_prefix"}, "adapter_policy=precise_prefix needs"),
        ({"INFERSTACK_TIMEOUTS__IDLE": "-1"}, "timeouts"),
        ({"INFERSTACK_DISCOVERY": "dns"}, "dns"),
        ({"INFERSTACK_NO_SUCH_FIELD": "1"}, "no_such_field"),
    ],
)
def test_bad_settings_are_rejected_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert field in str(info.value).lower()


def test_serve_refuses_a_bad_configuration_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INFERSTACK_PORT", "eighty")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "INFERSTACK_PORT" in err
    assert "Traceback" not in err


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    from pathlib import Path

    from inferstack.config_docs import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == render(), "run: python -m inferstack.config_docs > docs/configuration.md"


def test_nested_settings_are_known_and_typos_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSTACK_TENANCY__CACHE__TTL", "5")
    assert Settings().tenancy.cache.ttl == 5
    monkeypatch.setenv("INFERSTACK_TENANCY__CACHE__TLL", "5")
    with pytest.raises(ValidationError, match="INFERSTACK_TENANCY__CACHE__TLL"):
        Settings()


def test_a_client_variable_with_our_prefix_does_not_stop_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    # `export INFERSTACK_API_KEY=...; make loadtest` and `make up` share a shell.
    monkeypatch.setenv("INFERSTACK_API_KEY", "sk-client-side")
    Settings()


def test_every_inferstack_variable_the_repository_sets_is_a_setting_or_a_client_variable() -> None:
    """Workflows, scripts and manifests that set INFERSTACK_* for a process that may start a gateway
    must name real settings: the gateway refuses unknown ones (a test-tool variable once did)."""
    import re
    from pathlib import Path

    from inferstack.config import CLIENT_VARIABLES, _known

    repo = Path(__file__).resolve().parents[2]
    files = [
        *repo.glob(".github/**/*.yml"),
        *repo.glob(".github/scripts/*"),
        *repo.glob("k8s/**/*.yaml"),
        *repo.glob("k8s/**/*.sh"),
        *repo.glob("docker/**/*"),
        *repo.glob("scripts/**/*.sh"),
        repo / "Makefile",
    ]
    names = set()
    for path in files:
        if path.is_file():
            names |= set(re.findall(r"\bINFERSTACK_[A-Z0-9_]+", path.read_text(errors="replace")))
    assert names, "found no INFERSTACK_ variables: the globs are wrong"
    # Prose names a group as `INFERSTACK_TENANCY__REDIS__*`: the group itself must exist.
    strange = sorted(n for n in names if n not in CLIENT_VARIABLES and not _known(n.rstrip("_")))
    assert not strange, f"not gateway settings (the gateway would refuse to start): {strange}"


@pytest.mark.parametrize(
    "env", [{"INFERSTACK_REQUIRE_SHARED_STATE": "true"}, {"INFERSTACK_EXPECTED_REPLICAS": "3"}], ids=lambda e: str(e)
)
def test_serve_refuses_to_promise_exact_limits_across_replicas_without_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "INFERSTACK_REDIS_URL is not set" in err and "Traceback" not in err
    monkeypatch.setenv("INFERSTACK_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert Settings().redis_url  # with a shared store the same settings are valid
