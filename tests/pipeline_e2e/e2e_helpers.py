"""Constants and helpers shared by the end-to-end tests (a unique module name: several test
directories have a conftest.py, so tests must not import "conftest")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.localstack.resources import PipelineShape

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
AGENT_MODULE = "e2e_agents:make_runner"
# The queue redrives after 4 receives; the kit runs a task at most KIT_RUNS = 3 times.
MAX_RECEIVE_COUNT = 4
KIT_RUNS = MAX_RECEIVE_COUNT - 1


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
