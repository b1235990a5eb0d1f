"""Settings: environment, `rillet.toml`, flags, and the checks made when they are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rillet.errors import ConfigurationError
from rillet.settings import Settings


def test_defaults_are_a_local_single_user_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RILLET_CONFIG", raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    settings = Settings()
    assert (settings.host, settings.port, settings.auth_mode) == ("127.0.0.1", 8000, "none")
    assert settings.database_url.startswith("sqlite+aiosqlite:")
    assert settings.coalesce_window_ms == 20.0 and settings.event_retention_s == 600.0


def test_environment_then_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "rillet.toml"
    toml.write_text('coalesce_max_chars = 111\nbusy_policy = "enqueue"\nmax_message_chars = 100\n')
    monkeypatch.setenv("RILLET_CONFIG", str(toml))
    monkeypatch.setenv("RILLET_COALESCE_MAX_CHARS", "222")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    settings = Settings()
    assert settings.coalesce_max_chars == 222  # the environment wins over the file
    assert settings.busy_policy == "enqueue" and settings.max_message_chars == 100
    assert settings.openai_api_key == "sk-env"
    assert Settings(coalesce_max_chars=333).coalesce_max_chars == 333  # flags win over both


def test_auth_none_is_refused_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RILLET_AUTH_MODE", raising=False)
    with pytest.raises((ConfigurationError, ValidationError), match="loopback"):
        Settings(host="0.0.0.0")
    assert Settings(host="0.0.0.0", auth_mode="api_key").host == "0.0.0.0"
    assert Settings(host="::1").auth_mode == "none"


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(busy_policy="sometimes")  # type: ignore[arg-type]
    with pytest.raises((ConfigurationError, ValidationError)):
        Settings(coalesce_window_ms=-1)
