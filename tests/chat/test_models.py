"""Tests for the model catalogue, model resolution and pricing."""

from __future__ import annotations

import pytest
from pydantic_ai.models.function import FunctionModel

from rillet.chat.models import (
    ModelInfo,
    catalogue,
    cost_usd,
    default_model_id,
    resolve_model,
)
from rillet.errors import NotFoundError
from rillet.settings import Settings

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "RILLET_OPENAI_API_KEY",
    "RILLET_OPENAI_BASE_URL",
    "RILLET_OPENAI_COMPATIBLE_MODELS",
    "RILLET_ANTHROPIC_API_KEY",
    "RILLET_GEMINI_API_KEY",
    "RILLET_DEFAULT_MODEL",
    "RILLET_CONFIG",
)


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RILLET_CONFIG", "/nonexistent/rillet.toml")


def ids(settings: Settings) -> list[str]:
    return [model.id for model in catalogue(settings)]


def test_without_keys_only_the_offline_models_exist() -> None:
    settings = Settings()
    assert ids(settings) == ["demo", "bench"]
    assert default_model_id(settings) == "demo"
    demo = resolve_model(None, settings)
    assert demo.info.id == "demo"
    assert demo.info.provider == "rillet"
    assert isinstance(demo.model, FunctionModel)
    assert resolve_model("bench", settings).info.supports_tools is False


def test_openai_key_adds_curated_openai_models_with_prices() -> None:
    settings = Settings(openai_api_key="sk-test")
    assert ids(settings) == [
        "demo",
        "bench",
        "openai:gpt-4o",
        "openai:gpt-4o-mini",
        "openai:gpt-4.1",
        "openai:gpt-4.1-mini",
    ]
    gpt4o = next(model for model in catalogue(settings) if model.id == "openai:gpt-4o")
    assert gpt4o.provider == "openai"
    assert gpt4o.name == "gpt-4o"
    assert gpt4o.context_window == 128_000
    assert gpt4o.input_price_per_mtok == pytest.approx(2.5)
    assert gpt4o.output_price_per_mtok == pytest.approx(10.0)
    assert gpt4o.supports_tools and gpt4o.supports_images
    assert default_model_id(settings) == "openai:gpt-4o"


def test_every_provider_lists_models_with_context_windows_and_prices() -> None:
    settings = Settings(openai_api_key="sk", anthropic_api_key="ak", gemini_api_key="gk")
    models = catalogue(settings)
    assert {model.provider for model in models} == {"rillet", "openai", "anthropic", "google"}
    assert "anthropic:claude-sonnet-4-5" in ids(settings)
    assert "google:gemini-2.5-pro" in ids(settings)
    for model in models:
        assert model.context_window, model.id
        assert model.input_price_per_mtok is not None, model.id
        assert model.output_price_per_mtok is not None, model.id
    assert default_model_id(settings) == "openai:gpt-4o"


def test_default_model_follows_provider_order_and_the_setting() -> None:
    assert default_model_id(Settings(gemini_api_key="gk")) == "google:gemini-2.5-flash"
    assert (
        default_model_id(Settings(anthropic_api_key="ak", gemini_api_key="gk"))
        == "anthropic:claude-sonnet-4-5"
    )
    assert default_model_id(Settings(default_model="bench", openai_api_key="sk")) == "bench"


def test_openai_compatible_server_lists_its_configured_models() -> None:
    settings = Settings(
        openai_base_url="http://127.0.0.1:11434/v1", openai_compatible_models=["llama3.2", "gpt-4o"]
    )
    assert ids(settings) == ["demo", "bench", "openai:llama3.2", "openai:gpt-4o"]
    llama, gpt4o = catalogue(settings)[2:]
    assert llama.provider == "openai-compatible"
    assert llama.input_price_per_mtok is None and llama.context_window is None
    assert gpt4o.provider == "openai-compatible"
    assert gpt4o.input_price_per_mtok == pytest.approx(2.5)
    assert default_model_id(settings) == "openai:llama3.2"


def test_resolve_builds_models_with_explicit_providers() -> None:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.google import GoogleModel
    from pydantic_ai.models.openai import OpenAIChatModel

    settings = Settings(openai_api_key="sk-x", anthropic_api_key="ak-x", gemini_api_key="gk-x")
    openai = resolve_model("openai:gpt-4o-mini", settings)
    assert isinstance(openai.model, OpenAIChatModel)
    assert openai.model.model_name == "gpt-4o-mini"
    assert openai.model.client.api_key == "sk-x"
    assert str(openai.model.client.base_url).startswith("https://api.openai.com/v1")
    anthropic = resolve_model("anthropic:claude-haiku-4-5", settings)
    assert isinstance(anthropic.model, AnthropicModel)
    assert anthropic.info.provider == "anthropic"
    google = resolve_model("gemini:gemini-2.5-flash", settings)
    assert isinstance(google.model, GoogleModel)
    assert google.info.id == "google:gemini-2.5-flash"


def test_resolve_uses_the_base_url_and_caches_models() -> None:
    from pydantic_ai.models.openai import OpenAIChatModel

    settings = Settings(openai_base_url="http://127.0.0.1:9/v1")
    first = resolve_model("openai:qwen2.5", settings)
    assert first.info.provider == "openai-compatible"
    assert first.info.context_window is None
    assert isinstance(first.model, OpenAIChatModel)
    assert str(first.model.client.base_url).startswith("http://127.0.0.1:9/v1")
    assert first.model.client.api_key == "not-needed"
    assert resolve_model("openai:qwen2.5", settings).model is first.model
    assert resolve_model("demo", settings).model is resolve_model("demo", settings).model


def test_resolve_accepts_uncurated_names_for_configured_providers() -> None:
    resolved = resolve_model("openai:gpt-5-mini", Settings(openai_api_key="sk"))
    assert resolved.info.provider == "openai"
    assert resolved.info.context_window == 400_000


@pytest.mark.parametrize(
    "model_id", ["mistral:large", "nonsense", "anthropic:claude-haiku-4-5", "openai:", ":x"]
)
def test_resolve_refuses_unavailable_models(model_id: str) -> None:
    settings = Settings(openai_api_key="sk")
    with pytest.raises(NotFoundError) as caught:
        resolve_model(model_id, settings)
    assert caught.value.code == "not_found"
    assert f"model {model_id!r} is not available" in caught.value.message
    assert "openai:gpt-4o" in caught.value.message


def test_openai_without_key_or_base_url_is_not_available() -> None:
    with pytest.raises(NotFoundError, match="configured: demo, bench"):
        resolve_model("openai:gpt-4o", Settings())


def test_cost_of_a_known_model() -> None:
    info = resolve_model("openai:gpt-4o", Settings(openai_api_key="sk")).info
    assert cost_usd(info, 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert cost_usd(info, 1000, 500) == pytest.approx(0.0075)


def test_cost_of_unknown_and_offline_models() -> None:
    unknown = resolve_model("openai:my-local-llama", Settings(openai_base_url="http://x/v1")).info
    assert cost_usd(unknown, 1000, 1000) is None
    assert cost_usd(resolve_model("demo", Settings()).info, 1000, 1000) == 0.0


def test_model_info_to_dict() -> None:
    info = resolve_model("demo", Settings()).info
    data = info.to_dict()
    assert data["id"] == "demo"
    assert set(data) == {field for field in ModelInfo.__dataclass_fields__}
