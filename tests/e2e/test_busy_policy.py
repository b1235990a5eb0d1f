"""The per-session busy policy (DESIGN.md "Runs"): reject, enqueue, interrupt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import BACKENDS, backend_env, stop_server
from tests.support.server import ServerProcess, start_server
from tests.support.wsclient import WsClient, bench_text, text_of

pytestmark = pytest.mark.e2e


@pytest.fixture(
    scope="module",
    params=[
        (policy, backend) for backend in BACKENDS for policy in ("reject", "enqueue", "interrupt")
    ],
    ids=lambda param: "-".join(param),
)
def policy_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ServerProcess]]:
    policy, backend = request.param
    tmp: Path = tmp_path_factory.mktemp(f"busy-{policy}-{backend}")
    proc = start_server(tmp, busy_policy=policy, **backend_env(backend))
    yield policy, proc
    stop_server(proc)


async def test_a_message_while_a_run_is_active(
    policy_server: tuple[str, ServerProcess],
) -> None:
    policy, server = policy_server
    client = await WsClient.connect(server.ws_url)
    await client.message("words=300 rate=300")
    first = await client.recv_type("status")
    session_id, first_run = first["session_id"], first["run_id"]
    await client.recv_type("token")
    await client.message("words=5 rate=0", session_id=session_id)

    if policy == "reject":
        error = await client.recv_type("error")
        assert error["data"]["code"] == "busy" and error["data"]["retryable"] is True
        frames = await client.until_end(first_run)
        assert frames[-1]["data"]["reason"] == "completed"
        assert text_of(client.frames, first_run) == bench_text(300)
        expected_roles = ["user", "assistant"]
    elif policy == "enqueue":
        await client.until_end(first_run)
        second = await client.recv_type("status")
        assert second["data"]["status"] == "START" and second["run_id"] != first_run
        await client.until_end(second["run_id"])
        assert text_of(client.frames, first_run) == bench_text(300)
        assert text_of(client.frames, second["run_id"]) == bench_text(5)
        expected_roles = ["user", "assistant", "user", "assistant"]
    else:
        frames = await client.until_end(first_run)
        assert frames[-1]["data"]["reason"] == "cancelled"
        second = await client.recv_type("status")
        assert second["data"]["status"] == "START" and second["run_id"] != first_run
        await client.until_end(second["run_id"])
        assert text_of(client.frames, second["run_id"]) == bench_text(5)
        expected_roles = ["user", "assistant", "user", "assistant"]

    messages = httpx.get(f"{server.url}/v1/sessions/{session_id}/messages").json()["data"]
    assert [m["role"] for m in messages] == expected_roles
    statuses = [m["status"] for m in messages if m["role"] == "assistant"]
    assert (
        statuses
        == {
            "reject": ["complete"],
            "enqueue": ["complete", "complete"],
            "interrupt": ["cancelled", "complete"],
        }[policy]
    )
    await client.close()
