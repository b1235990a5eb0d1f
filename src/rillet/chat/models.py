"""The model catalogue: which models this process can use, what they cost, and how to reach them.

A model id is `<provider>:<name>` (`openai:gpt-4o`, `anthropic:claude-haiku-4-5`,
`google:gemini-2.5-flash`, `gemini:` is accepted for `google:`) or one of Rillet's offline models
(`demo`, `bench`). `catalogue` lists the models the settings make available, with context windows
and prices from genai-prices; `resolve_model` turns an id into a pydantic-ai `Model` built with the
keys and base URL from the settings (pydantic-ai never reads the environment for Rillet);
`cost_usd` prices one request's tokens.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import TieredPrices
from pydantic_ai.models import Model

from rillet.chat.demo import builtin_models
from rillet.errors import NotFoundError
from rillet.settings import Settings

ProviderName = Literal["openai", "openai-compatible", "anthropic", "google", "rillet"]
KeyedProvider = Literal["openai", "anthropic", "google"]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
"""Where `openai:` models go when `openai_base_url` is unset."""

CURATED_MODELS: dict[KeyedProvider, tuple[str, ...]] = {
    "openai": ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"),
    "anthropic": ("claude-sonnet-4-5", "claude-haiku-4-5"),
    "google": ("gemini-2.5-flash", "gemini-2.5-pro"),
}
"""Models listed for each provider with a key, first one being that provider's default."""

CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "claude-sonnet-4-5": 200_000,
    "claude-haiku-4-5": 200_000,
    "gemini-2.5-flash": 1_048_576,
    "gemini-2.5-pro": 1_048_576,
}
"""Context windows (tokens) used when genai-prices does not know one."""

_PROVIDER_ALIASES: dict[str, KeyedProvider] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "gemini": "google",
}
_PRICE_PROVIDER_IDS: dict[ProviderName, str | None] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    # An OpenAI-compatible server may serve anyone's model; genai-prices matches it by name.
    "openai-compatible": None,
}


@dataclass(frozen=True)
class ModelInfo:
    """One model in the catalogue."""

    id: str
    """Catalogue id, such as `openai:gpt-4o` or `demo`."""
    provider: ProviderName
    name: str
    """The model's name at its provider."""
    context_window: int | None
    """Tokens the model reads at most; `None` when unknown."""
    input_price_per_mtok: float | None
    """USD per million input tokens; `None` when unknown."""
    output_price_per_mtok: float | None
    """USD per million output tokens; `None` when unknown."""
    supports_tools: bool
    supports_images: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResolvedModel:
    """A catalogue entry and the pydantic-ai model that runs it."""

    info: ModelInfo
    model: Model


BUILTIN_MODELS: dict[str, ModelInfo] = {
    "demo": ModelInfo(
        id="demo",
        provider="rillet",
        name="demo",
        context_window=32_768,
        input_price_per_mtok=0.0,
        output_price_per_mtok=0.0,
        supports_tools=True,
        supports_images=False,
    ),
    "bench": ModelInfo(
        id="bench",
        provider="rillet",
        name="bench",
        context_window=32_768,
        input_price_per_mtok=0.0,
        output_price_per_mtok=0.0,
        supports_tools=False,
        supports_images=False,
    ),
}
"""Rillet's offline models, always available."""


def catalogue(settings: Settings) -> list[ModelInfo]:
    """Every model the settings make available, offline models first."""
    models = list(BUILTIN_MODELS.values())
    for provider in _configured_providers(settings):
        if provider == "openai" and settings.openai_base_url:
            names: tuple[str, ...] = tuple(settings.openai_compatible_models)
        else:
            names = CURATED_MODELS[provider]
        models.extend(_model_info(settings, provider, name) for name in names)
    return models


def default_model_id(settings: Settings) -> str:
    """The model a message that names none runs on."""
    if settings.default_model:
        return settings.default_model
    for model in catalogue(settings):
        if model.provider != "rillet":
            return model.id
    return "demo"


def resolve_model(model_id: str | None, settings: Settings) -> ResolvedModel:
    """The catalogue entry and pydantic-ai model for `model_id` (`None`: the default model).

    Any name is accepted for a provider whose key (or, for `openai:`, base URL) is set, so new
    models work before they are curated here.

    Raises:
        NotFoundError: the id names an unknown provider, or one that is not configured.
    """
    model_id = model_id or default_model_id(settings)
    if model_id in BUILTIN_MODELS:
        return ResolvedModel(info=BUILTIN_MODELS[model_id], model=_builtin_model(model_id))
    prefix, sep, name = model_id.partition(":")
    provider = _PROVIDER_ALIASES.get(prefix)
    if not sep or not name or provider is None or provider not in _configured_providers(settings):
        raise NotFoundError(_not_available_message(model_id, settings))
    info = _model_info(settings, provider, name)
    return ResolvedModel(info=info, model=_provider_model(settings, provider, name))


def cost_usd(info: ModelInfo, input_tokens: int, output_tokens: int) -> float | None:
    """USD price of one request's tokens on `info`; `None` when genai-prices does not know it."""
    if info.provider == "rillet":
        return 0.0
    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    try:
        price = genai_prices.calc_price(
            usage, info.name, provider_id=_PRICE_PROVIDER_IDS[info.provider]
        )
    except LookupError:
        return None
    return float(price.total_price)


def _configured_providers(settings: Settings) -> list[KeyedProvider]:
    providers: list[KeyedProvider] = []
    if settings.openai_api_key or settings.openai_base_url:
        providers.append("openai")
    if settings.anthropic_api_key:
        providers.append("anthropic")
    if settings.gemini_api_key:
        providers.append("google")
    return providers


def _not_available_message(model_id: str, settings: Settings) -> str:
    configured = ", ".join(model.id for model in catalogue(settings))
    hint = (
        "set OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or RILLET_OPENAI_BASE_URL "
        "to add providers"
    )
    return f"model {model_id!r} is not available; configured: {configured} ({hint})"


def _model_info(settings: Settings, provider: KeyedProvider, name: str) -> ModelInfo:
    catalogue_provider: ProviderName = provider
    if provider == "openai" and settings.openai_base_url:
        catalogue_provider = "openai-compatible"
    context_window, input_price, output_price = _known_model_data(
        _PRICE_PROVIDER_IDS[catalogue_provider], name
    )
    return ModelInfo(
        id=f"{provider}:{name}",
        provider=catalogue_provider,
        name=name,
        context_window=context_window or CONTEXT_WINDOWS.get(name),
        input_price_per_mtok=input_price,
        output_price_per_mtok=output_price,
        supports_tools=True,
        supports_images=catalogue_provider != "openai-compatible",
    )


def _known_model_data(
    price_provider_id: str | None, name: str
) -> tuple[int | None, float | None, float | None]:
    """Context window and base prices per million tokens, from genai-prices' bundled data."""
    try:
        _, model = data_snapshot.get_snapshot().find_provider_model(
            name, None, price_provider_id, None
        )
    except LookupError:
        return None, None, None
    prices = model.get_prices(datetime.now(UTC))
    return (
        model.context_window,
        _per_mtok(getattr(prices, "input_mtok", None)),
        _per_mtok(getattr(prices, "output_mtok", None)),
    )


def _per_mtok(price: object) -> float | None:
    # Tiered prices (long-context surcharges) are listed at their base tier.
    if isinstance(price, TieredPrices):
        return float(price.base)
    if isinstance(price, Decimal | int | float):
        return float(price)
    return None


@functools.cache
def _builtin_model(model_id: str) -> Model:
    return builtin_models()[model_id]


def _provider_model(settings: Settings, provider: KeyedProvider, name: str) -> Model:
    if provider == "openai":
        return _openai_model(
            name,
            base_url=settings.openai_base_url or OPENAI_DEFAULT_BASE_URL,
            # A local OpenAI-compatible server needs no key, but the SDK wants a non-empty one.
            api_key=settings.openai_api_key or "not-needed",
        )
    if provider == "anthropic":
        assert settings.anthropic_api_key is not None
        return _anthropic_model(name, api_key=settings.anthropic_api_key)
    assert settings.gemini_api_key is not None
    return _google_model(name, api_key=settings.gemini_api_key)


# The SDK imports below are deferred: each provider's SDK costs up to two seconds to import, which a
# process that never uses that provider should not pay. Models are cached per id and credentials.


@functools.lru_cache(maxsize=64)
def _openai_model(name: str, *, base_url: str, api_key: str) -> Model:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url, api_key=api_key))


@functools.lru_cache(maxsize=64)
def _anthropic_model(name: str, *, api_key: str) -> Model:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    return AnthropicModel(name, provider=AnthropicProvider(api_key=api_key))


@functools.lru_cache(maxsize=64)
def _google_model(name: str, *, api_key: str) -> Model:
    from pydantic_ai.models.google import GoogleModel
    from pydantic_ai.providers.google import GoogleProvider

    return GoogleModel(name, provider=GoogleProvider(api_key=api_key))
