"""All of Rillet's configuration, read once.

Values come from (highest first) explicit arguments such as `rillet serve` flags, environment
variables prefixed `RILLET_`, an optional `rillet.toml` (path in `RILLET_CONFIG`), then the defaults
below. Provider keys also accept their usual unprefixed names (`OPENAI_API_KEY`, ...). Nothing else
in the package reads the environment.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rillet.errors import ConfigurationError

AuthMode = Literal["none", "api_key"]
BusyPolicy = Literal["reject", "enqueue", "interrupt"]


class Settings(BaseSettings):
    """Typed configuration of one Rillet process."""

    model_config = SettingsConfigDict(
        env_prefix="RILLET_", extra="ignore", populate_by_name=True, frozen=True
    )

    host: str = "127.0.0.1"
    """Address the HTTP server binds to."""
    port: int = 8000
    """Port the HTTP server binds to (0 picks a free one)."""
    database_url: str = "sqlite+aiosqlite:///rillet.db"
    """SQLAlchemy async URL: `sqlite+aiosqlite:///path.db` or `postgresql+asyncpg://...`."""
    redis_url: str | None = None
    """Redis URL for event logs and commands shared by several processes; unset = in-memory."""
    redis_prefix: str = "rillet:"
    """Prefix of every Redis key and channel, so several deployments can share one Redis."""
    lease_ttl_s: float = 15.0
    """A run's lease lasts this long unless its node renews it (every third of it); when it
    lapses (the node died), any node marks the run `interrupted` and closes its log."""
    drain_timeout_s: float = 30.0
    """On SIGTERM, how long runs may go on before they are interrupted."""

    auth_mode: AuthMode = "none"
    """`none` (single local user, loopback only) or `api_key` (keys from `rillet keys create`)."""
    local_user: str = "local"
    """The user everything belongs to when `auth_mode` is `none`."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Origins allowed to open WebSockets; empty allows any (API clients send none)."""

    default_model: str | None = None
    """Model used when a message names none; unset: the first provider with a key, else `demo`."""
    openai_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("RILLET_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    """Key for OpenAI (or the OpenAI-compatible server at `openai_base_url`)."""
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RILLET_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    """Base URL of an OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio...)."""
    openai_compatible_models: list[str] = Field(default_factory=list)
    """Model names to list for the OpenAI-compatible server at `openai_base_url`."""
    anthropic_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RILLET_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    )
    """Key for Anthropic."""
    gemini_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RILLET_GEMINI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"),
    )
    """Key for Google Gemini."""
    system_prompt: str = "You are a helpful assistant. Answer in markdown."
    """Instructions given to every model."""

    busy_policy: BusyPolicy = "reject"
    """What a message does to a session whose run is still active."""
    max_message_chars: int = 8000
    """Longest user message accepted."""
    max_frame_bytes: int = 1_048_576
    """Largest WebSocket frame accepted; a larger one closes the connection with 1009."""
    messages_per_minute: int = 30
    """Messages one user may send per minute (control frames never count)."""
    max_connections_per_user: int = 50
    """Open WebSockets one user may have on this process; more close with 4429."""
    max_connections_per_ip: int = 200
    """Open WebSockets one client address may have on this process; more close with 4429."""
    max_model_requests: int = 10
    """Model requests one run may make."""
    tool_timeout_s: float = 30.0
    """How long a tool call may run, also after a cancel."""

    coalesce_window_ms: float = 20.0
    """Text deltas arriving within this window are merged before they enter the event log."""
    coalesce_max_chars: int = 4096
    """A merged text delta is flushed early once it holds this many characters."""
    event_retention_s: float = 600.0
    """How long a finished run's event log stays available for replay."""

    init_timeout_s: float = 10.0
    """Seconds a WebSocket has to authenticate with `init` when a token is required."""
    ping_interval_s: float = 20.0
    """Seconds between server WebSocket pings; a peer that does not answer is closed."""
    idle_timeout_s: float = 600.0
    """A WebSocket that sends nothing and watches no run for this long is closed with 4408."""
    keepalive_s: float = 15.0
    """Seconds between SSE keep-alive comments."""

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.auth_mode == "none" and not _is_loopback(self.host):
            raise ConfigurationError(
                f"auth_mode 'none' is only allowed on a loopback address, not {self.host!r}; "
                "set RILLET_AUTH_MODE=api_key and create keys with `rillet keys create`"
            )
        if self.coalesce_window_ms < 0 or self.coalesce_max_chars < 1:
            raise ConfigurationError("coalescing window must be >= 0 and max chars >= 1")
        if self.lease_ttl_s <= 0 or self.drain_timeout_s < 0:
            raise ConfigurationError("lease_ttl_s must be > 0 and drain_timeout_s >= 0")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("RILLET_CONFIG", "rillet.toml"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
        return (init_settings, env_settings, toml)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
