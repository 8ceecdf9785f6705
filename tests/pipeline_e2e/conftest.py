"""Fixtures for the end-to-end tests: one moto server per session, local stacks per test.

The emulator comes from tests/conftest.py (``emulator``, session scope). A ``LocalStack`` built on
both seeds its own project and creates its own queues and table, so tests never share state.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.resources import PipelineShape
    from infra.localstack.stack import LocalStack

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE) not in sys.path:
    # The test agent is loaded through AGENT_MODULE="e2e_agents:make_runner", as in Lambda.
    sys.path.insert(0, str(HERE))

AGENT_MODULE = "e2e_agents:make_runner"
MAX_RECEIVE_COUNT = 3


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from infra.localstack.moto import MotoServer

    with MotoServer.start() as server:
        yield server


@pytest.fixture
def sqs(moto_server: MotoServer) -> Any:
    return moto_server.client("sqs")


def fast_shape(**changes: Any) -> PipelineShape:
    """template.yaml's shape with short timeouts, so that retries happen within seconds."""
    from infra.localstack.resources import PipelineShape

    return PipelineShape.from_template().replace(
        **{
            "maximum_batching_window_seconds": 0.2,
            "max_receive_count": MAX_RECEIVE_COUNT,
            "consumer_timeout_seconds": 20,
            "visibility_timeout_seconds": 30,
            "maximum_concurrency": 2,
            **changes,
        }
    )


@pytest.fixture
def make_stack(emulator: Emulator, moto_server: MotoServer) -> Iterator[Callable[..., LocalStack]]:
    """Start LocalStacks on the session emulator and moto server; all are closed after the test."""
    import e2e_agents

    from infra.localstack.stack import LocalStack

    stacks: list[LocalStack] = []

    def start(**kwargs: Any) -> LocalStack:
        kwargs.setdefault("fixture", e2e_agents.E2E_FIXTURE)
        kwargs.setdefault("agent_module", AGENT_MODULE)
        kwargs.setdefault("shape", fast_shape())
        stack = LocalStack(
            emulator=emulator,
            moto=moto_server,
            retry_backoff_base_seconds=1,
            retry_backoff_max_seconds=2,
            **kwargs,
        )
        stacks.append(stack.start())
        return stack

    e2e_agents.reset()
    emulator.faults.clear()
    try:
        yield start
    finally:
        for stack in reversed(stacks):
            stack.close()
        e2e_agents.reset()


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``agentkit`` in a subprocess (a real process, as a user would), bounded by a timeout."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agent_core.cli", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
