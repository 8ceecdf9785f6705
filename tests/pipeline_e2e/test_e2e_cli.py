"""The operations CLI as a user runs it: real subprocesses against the local stack."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from e2e_helpers import HERE, run_cli

from infra.localstack.stack import LocalStack


def test_produce_and_poll_commands_run_the_pipeline(make_stack: Callable[..., LocalStack]) -> None:
    stack = make_stack()
    env = {
        **stack.cli_env(),
        # The subprocess loads the test agent by AGENT_MODULE, as the Lambda would.
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }

    produced = run_cli("produce", "--json", env=env, timeout=120)
    assert produced.returncode == 0, produced.stderr
    summary = json.loads(produced.stdout)
    assert summary["stages"]["triage"]["enqueued"] == 12
    assert summary["stages"]["check"]["enqueued"] == 6

    polled = run_cli(
        "poll",
        "--json",
        "--batching-window",
        "0.2",
        "--concurrency",
        "2",
        "--duration",
        "90",
        env=env,
        timeout=150,
    )
    assert polled.returncode == 0, polled.stderr
    stats = json.loads(polled.stdout)
    assert stats["drained"] is True
    assert stats["redeliveries"] >= 6  # flaky twice, each broken task twice

    state = stack.emulator.state
    counts = state.stage_counts(stack.project_hash)
    # ok_* and flaky moved to check, drop_* discarded, chk_* done, redo_* back to annotation;
    # the broken ones stay in triage, parked in the DLQ.
    assert counts["triage"] == 2
    assert counts["check"] == 7
    assert counts["Discarded"] == 3
    assert counts["Complete"] == 4
    assert counts["Annotate"] == 2
    inspected = run_cli("dlq", "inspect", "--json", env=env)
    assert inspected.returncode == 0, inspected.stderr
    assert sorted(r["data_title"] for r in json.loads(inspected.stdout)) == [
        "broken_00.jpg",
        "broken_01.jpg",
    ]


def test_cli_errors_are_one_line() -> None:
    result = run_cli("poll", env={"WORK_QUEUE_URL": ""})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --queue-url is required: pass it or set WORK_QUEUE_URL."


def test_demo_runs_end_to_end_and_reports() -> None:
    # The embedded default: its own emulator and moto server, template.yaml's queue settings
    # (a shorter batching window keeps the test quick).
    result = run_cli("demo", "--batching-window", "1", env={"COLUMNS": "200"}, timeout=170)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "Tasks moved by the agents" in out
    for stage, pathway in (
        ("pre-label", "annotate"),
        ("pre-label", "skip"),
        ("quality-check", "accept"),
        ("quality-check", "reject"),
    ):
        assert any(stage in line and pathway in line for line in out.splitlines()), pathway
    assert "Dead-letter queue: 2 message(s)" in out
    assert "frame_0013.jpg" in out and "qc_0013.jpg" in out
    assert "SimulatedModelError" in out
    assert "retries (redeliveries)" in out and "drained" in out
    assert "Demo finished in" in out
    # It ends with `agentkit status` of the local stack, read through describe_stacks.
    assert "$ agentkit status --stack-name agentkit-local-" in out
    assert "Tasks in the agent stages (Encord)" in out and "Task leases (DynamoDB)" in out
