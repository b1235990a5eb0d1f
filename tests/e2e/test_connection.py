"""WebSocket connection rules: auth deadline, Origin allowlist, idle close, subprotocol token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.e2e.conftest import create_key
from tests.support.server import ServerProcess, start_server
from tests.support.wsclient import WsClient, bench_text, text_of

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp: Path = tmp_path_factory.mktemp("strict")
    proc = start_server(
        tmp,
        auth_mode="api_key",
        init_timeout_s="1",
        idle_timeout_s="2",
        allowed_origins='["https://chat.example"]',
        messages_per_minute="3",
        max_connections_per_user="2",
    )
    yield proc
    proc.stop()


async def closed_code(client: WsClient) -> int | None:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await client.recv(timeout=10)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def test_no_init_in_time_closes_with_4401(strict_server: ServerProcess) -> None:
    client = await WsClient.connect(strict_server.ws_url, init=False)
    assert await closed_code(client) == 4401


async def test_a_foreign_origin_closes_with_4403(strict_server: ServerProcess) -> None:
    client = await WsClient.connect(
        strict_server.ws_url, init=False, origin=websockets.Origin("https://evil.example")
    )
    assert await closed_code(client) == 4403
    allowed = await WsClient.connect(
        strict_server.ws_url,
        create_key(strict_server, "carol"),
        origin=websockets.Origin("https://chat.example"),
    )
    await allowed.send({"type": "ping", "t": 1})
    assert (await allowed.recv_type("pong"))["data"]["t"] == 1
    await allowed.close()


async def test_an_idle_connection_closes_with_4408(strict_server: ServerProcess) -> None:
    client = await WsClient.connect(strict_server.ws_url, create_key(strict_server, "dave"))
    assert await closed_code(client) == 4408


async def test_token_as_subprotocol_and_message_rate_limit(strict_server: ServerProcess) -> None:
    key = create_key(strict_server, "erin")
    client = await WsClient.connect(
        strict_server.ws_url,
        init=False,
        subprotocols=[websockets.Subprotocol("rillet.v1"), websockets.Subprotocol(f"bearer.{key}")],
    )
    assert client.conn.subprotocol == "rillet.v1"
    for _ in range(3):
        await client.message("words=2 rate=0")
        assert text_of(await client.until_end()) == bench_text(2)
    await client.message("words=2 rate=0")
    error = await client.recv_type("error")
    assert error["data"]["code"] == "rate_limited" and error["data"]["retryable"] is True
    # Control frames are never rate limited, and the connection stays usable.
    for t in range(5):
        await client.send({"type": "ping", "t": t})
        assert (await client.recv_type("pong"))["data"]["t"] == t
    await client.close()


async def test_too_many_connections_for_one_user_close_with_4429(
    strict_server: ServerProcess,
) -> None:
    key = create_key(strict_server, "frank")
    first = await WsClient.connect(strict_server.ws_url, key)
    second = await WsClient.connect(strict_server.ws_url, key)
    third = await WsClient.connect(strict_server.ws_url, init=False)
    await third.send({"type": "init", "token": key})
    assert await closed_code(third) == 4429
    await first.close()
    await asyncio.sleep(0.2)
    fourth = await WsClient.connect(strict_server.ws_url, key)  # a place was freed
    await fourth.send({"type": "ping", "t": 4})
    assert (await fourth.recv_type("pong"))["data"]["t"] == 4
    await second.close()
    await fourth.close()
