"""`agentkit status` (and `dlq --stack-name`) against the local stack, in the middle of a drain.

The local stack registers a CloudFormation stack on moto with template.yaml's output names, so the
command finds everything through describe_stacks as it does against AWS. Every number it prints
is checked against a source it did not read through the command: the emulator's own task
counts, SQS's queue attributes, a raw scan of the lease table, the producer handler's return
value and the alarm state the test set.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from e2e_agents import E2E_FIXTURE, E2E_FIXTURE_NO_FAILURES
from e2e_helpers import run_cli

if TYPE_CHECKING:
    from infra.localstack.moto import MotoServer
    from infra.localstack.stack import LocalStack

AGENT_STAGES = [s["title"] for s in E2E_FIXTURE["workflow"]["stages"] if s["type"] == "AGENT"]
POISON_BODY = "this is not a task envelope"
# Wide enough that no line of the status screen wraps.
WIDE = {"COLUMNS": "120"}


def _live_leases_by_state(stack: LocalStack) -> dict[str, int]:
    dynamodb = stack.moto.client("dynamodb")
    now = time.time()
    counts: Counter[str] = Counter()
    for page in dynamodb.get_paginator("scan").paginate(TableName=stack.queues.lease_table_name):
        for item in page["Items"]:
            if int(item["expires_at"]["N"]) >= now:
                counts[item["state"]["S"]] += 1
    return dict(counts)


def _queue(stack: LocalStack, url: str) -> dict[str, int]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = stack.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)
    return {name: int(value) for name, value in attributes["Attributes"].items()}


def _mid_drain(make_stack: Callable[..., LocalStack]) -> tuple[LocalStack, Any, int]:
    """A producer tick, one consumer invocation, and 3 messages held as a running consumer would.

    The fixture without failing tasks: a retried message changes visibility on a timer, which
    would move counts between the command's read and the test's.
    """
    stack = make_stack(fixture=E2E_FIXTURE_NO_FAILURES, cloud_stack=True)
    sqs = stack.sqs()
    sqs.send_message(QueueUrl=stack.queues.work_queue_url, MessageBody=POISON_BODY)
    summary = stack.producer_tick()
    report = stack.poller().run_once(wait_seconds=2)
    assert report is not None
    held = sqs.receive_message(
        QueueUrl=stack.queues.work_queue_url, MaxNumberOfMessages=3, VisibilityTimeout=300
    )["Messages"]
    return stack, summary, len(held)


def test_status_mid_drain_matches_the_emulator_queues_leases_logs_and_alarms(
    make_stack: Callable[..., LocalStack],
) -> None:
    from typer.testing import CliRunner

    from agent_core.cli import app
    from agent_core.commands.status import resolve_stack
    from infra.template_config import DEFAULT_TEMPLATE_PATH, _read_template

    stack, summary, held = _mid_drain(make_stack)
    assert stack.cloud is not None
    alarm = stack.cloud.alarm_names["TasksFailingAlarm"]
    stack.moto.client("cloudwatch").set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="set by the test"
    )

    # The registered stack has only outputs and parameters that template.yaml has.
    found = resolve_stack(stack.stack_name, stack.moto.region, stack.moto.endpoint_url)
    template = _read_template(DEFAULT_TEMPLATE_PATH)
    assert set(found.outputs) <= set(template["Outputs"])
    assert set(found.parameters) <= set(template["Parameters"])

    result = run_cli("status", "--stack-name", stack.stack_name, "--json", env=stack.cli_env())
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout)

    # Encord: the tasks in each agent stage, as the emulator counts them.
    counts = stack.emulator.state.stage_counts(stack.project_hash)
    assert status["waiting"] == {stage: counts[stage] for stage in AGENT_STAGES}
    assert status["encord_error"] is None
    assert sum(status["waiting"].values()) > 0

    # SQS: mid-drain, some waiting, the held ones in flight; the poison message parked.
    work = _queue(stack, stack.queues.work_queue_url)
    assert status["work_queue"] == {
        "waiting": work["ApproximateNumberOfMessages"],
        "in_flight": work["ApproximateNumberOfMessagesNotVisible"],
        "delayed": work["ApproximateNumberOfMessagesDelayed"],
    }
    assert status["work_queue"]["in_flight"] == held == 3
    assert status["work_queue"]["waiting"] > 0
    parked = stack.dlq_messages()
    assert status["dlq_total"] == len(parked)
    assert status["dlq_by_reason"] == dict(Counter(m.reason for m in parked))
    assert status["dlq_by_reason"] == {"poison": 1}

    # Leases: every state listed, the live ones as a raw scan counts them. Every live lease is
    # backed by exactly one message in the work queue (the poison message has none).
    live = _live_leases_by_state(stack)
    assert status["leases"] == {state: live.get(state, 0) for state in status["leases"]}
    assert set(live) <= set(status["leases"])
    assert status["expired_leases"] == 0
    assert sum(status["leases"].values()) == status["work_queue"]["waiting"] + held

    # The last producer run, from its log line in the stack's log group.
    run = status["last_producer_run"]
    assert run["run_id"] == summary["run_id"]
    assert run["totals"] == summary["totals"]
    assert run["age_seconds"] < 120

    # Alarms: exactly the one the test put in ALARM (moto never evaluates alarms).
    assert [a["name"] for a in status["alarms_in_alarm"]] == [alarm]

    # The screen a person reads, same numbers (in-process: the stack's environment is this
    # process's environment while it runs).
    screen = CliRunner().invoke(app, ["status", "--stack-name", stack.stack_name], env=WIDE)
    assert screen.exit_code == 0, screen.output
    for text in (
        f"Stack {stack.stack_name}",
        "Tasks in the agent stages (Encord)",
        "Task leases (DynamoDB)",
        "Last producer run:",
        alarm,
    ):
        assert text in screen.output, (text, screen.output)
    lines = {" ".join(line.split()[:-1]): line.split()[-1] for line in screen.output.splitlines()}
    assert lines["enqueued"] == str(summary["totals"]["enqueued"])
    assert lines["work queue: in flight or backing off"] == "3"
    assert lines["reason poison"] == "1"

    # The dlq commands find the queues from the stack too.
    inspected = CliRunner().invoke(
        app, ["dlq", "inspect", "--stack-name", stack.stack_name, "--json"], env=WIDE
    )
    assert inspected.exit_code == 0, inspected.output
    assert [m["reason"] for m in json.loads(inspected.output)] == ["poison"]
    replay = ["dlq", "replay", "--stack-name", stack.stack_name, "--reason", "poison"]
    replayed = CliRunner().invoke(app, [*replay, "--dry-run", "--json"], env=WIDE)
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output)["matched"] == 1


def test_status_of_a_missing_stack_says_what_to_check(moto_server: MotoServer) -> None:
    env = {k: v for k, v in moto_server.aws_env().items() if v is not None}
    result = run_cli("status", "--stack-name", "no-such-stack", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: No stack named 'no-such-stack' in region us-east-1: "
        "check --stack-name and --region."
    )


def test_every_option_has_help_and_no_flag_shows_a_type() -> None:
    import typer
    from typer.testing import CliRunner

    from agent_core.cli import app

    def commands(command: Any, path: list[str]) -> Any:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from commands(sub, [*path, name])
        else:
            yield path, command

    found = list(commands(typer.main.get_command(app), ["agentkit"]))
    assert len(found) >= 9
    missing = [
        (" ".join(path), p.opts)
        for path, command in found
        for p in command.params
        if getattr(p, "param_type_name", "") == "option" and not p.help
    ]
    assert missing == []
    runner = CliRunner()
    for path, _ in found:
        shown = runner.invoke(app, [*path[1:], "--help"])
        assert shown.exit_code == 0, path
        assert "<bool>" not in shown.output, shown.output
