"""The `rillet` command: serve, keys, models, db.

`rillet serve` flags map one to one onto `Settings` fields; a flag left out keeps the value from
the environment, `rillet.toml` or the default.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rillet.errors import ConfigurationError
from rillet.settings import Settings

app = typer.Typer(help="Rillet: a streaming chat server for LLM agents.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
console = Console()


def load_settings(**overrides: Any) -> Settings:
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except (ConfigurationError, ValueError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (0 picks a free one).")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy async URL.")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (scale-out).")] = None,
    auth_mode: Annotated[str | None, typer.Option(help="none or api_key.")] = None,
    default_model: Annotated[str | None, typer.Option(help="Default model id.")] = None,
    busy_policy: Annotated[str | None, typer.Option(help="reject, enqueue or interrupt.")] = None,
    workers: Annotated[int, typer.Option(help="Processes (needs Redis when > 1).")] = 1,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Start the server."""
    settings = load_settings(
        host=host,
        port=port,
        database_url=database_url,
        redis_url=redis_url,
        auth_mode=auth_mode,
        default_model=default_model,
        busy_policy=busy_policy,
    )
    if workers > 1 and not settings.redis_url:
        console.print(
            "[red]--workers > 1 needs RILLET_REDIS_URL:[/red] separate processes cannot share "
            "in-memory event logs."
        )
        raise typer.Exit(2)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    bound_port = sock.getsockname()[1]
    from rillet.server.serve import serve_one, serve_workers

    print(f"rillet: listening on http://{settings.host}:{bound_port}", flush=True)
    if workers > 1:
        sock.listen(2048)
        raise typer.Exit(serve_workers(settings, sock, log_level, workers))
    serve_one(settings, sock, log_level)


@keys_app.command("create")
def keys_create(user: Annotated[str, typer.Option(help="User name.")]) -> None:
    """Create an API key for USER (created if new); the key is printed once."""
    from rillet.server.auth import new_api_key
    from rillet.storage.sql import SqlStore

    settings = load_settings()

    async def create() -> str:
        store = SqlStore(settings.database_url)
        await store.start()
        try:
            record = await store.ensure_user(user)
            key, key_hash, prefix = new_api_key()
            await store.create_api_key(record.id, key_hash, prefix)
            return key
        finally:
            await store.close()

    key = asyncio.run(create())
    print(key)
    print(f"API key for {user!r}: store it now, it is not shown again.", file=sys.stderr)


@keys_app.command("list")
def keys_list(user: Annotated[str, typer.Option(help="User name.")]) -> None:
    """List USER's keys (prefixes only)."""
    from rillet.storage.sql import SqlStore

    settings = load_settings()

    async def list_keys() -> None:
        store = SqlStore(settings.database_url)
        await store.start()
        try:
            record = await store.ensure_user(user)
            table = Table("id", "prefix", "created", "revoked")
            for key in await store.list_api_keys(record.id):
                table.add_row(
                    key.id,
                    key.prefix,
                    key.created_at.isoformat(),
                    key.revoked_at.isoformat() if key.revoked_at else "",
                )
            console.print(table)
        finally:
            await store.close()

    asyncio.run(list_keys())


@keys_app.command("revoke")
def keys_revoke(
    user: Annotated[str, typer.Option(help="User name.")],
    key_id: Annotated[str, typer.Argument(help="Key id from `rillet keys list`.")],
) -> None:
    """Revoke one of USER's keys."""
    from rillet.storage.sql import SqlStore

    settings = load_settings()

    async def revoke() -> None:
        store = SqlStore(settings.database_url)
        await store.start()
        try:
            record = await store.ensure_user(user)
            await store.revoke_api_key(record.id, key_id)
        finally:
            await store.close()

    asyncio.run(revoke())


@app.command()
def models() -> None:
    """List the models this configuration offers."""
    from rillet.chat.models import catalogue, default_model_id

    settings = load_settings()
    default = default_model_id(settings)
    table = Table("id", "provider", "context", "$/M in", "$/M out", "tools", "default")
    for info in catalogue(settings):
        table.add_row(
            info.id,
            info.provider,
            str(info.context_window or "?"),
            _price(info.input_price_per_mtok),
            _price(info.output_price_per_mtok),
            "yes" if info.supports_tools else "no",
            "*" if info.id == default else "",
        )
    console.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (the server also does this at start)."""
    from rillet.storage.sql import SqlStore

    settings = load_settings()

    async def upgrade() -> None:
        store = SqlStore(settings.database_url)
        await store.start()
        await store.close()

    asyncio.run(upgrade())
    console.print("database is up to date")


def _price(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


if __name__ == "__main__":
    app()
