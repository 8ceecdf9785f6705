"""``agentkit status``: one screen of a deployed stack's state, found from the stack's outputs.

Everything is read from the services themselves, nothing is estimated: tasks waiting in each
agent stage (Encord), messages in the work queue and the DLQ by reason (SQS), leases by state
(DynamoDB), the last producer run's totals (its log line in CloudWatch Logs) and the alarms in
ALARM (CloudWatch, the alarms that publish to the stack's topic). Where the queues and the table
are comes from ``describe_stacks``; the local stack registers a stack with the same outputs on
its moto server, so ``agentkit demo`` and the tests take the same path.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from agent_core.commands._common import (
    ENDPOINT_URL_OPTION,
    REGION_OPTION,
    STACK_NAME_OPTION,
    console,
    print_json,
)
from agent_core.exceptions import AgentkitError, ConfigurationError

if TYPE_CHECKING:
    from boto3.session import Session
    from rich.console import Console

# Outputs of template.yaml that status and `dlq --stack-name` read.
WORK_QUEUE_OUTPUT = "WorkQueueUrl"
DLQ_OUTPUT = "DeadLetterQueueUrl"
LEASE_TABLE_OUTPUT = "LeaseTableName"
PRODUCER_LOG_GROUP_OUTPUT = "ProducerLogGroupName"
ALARM_TOPIC_OUTPUT = "AlarmTopicArn"
DASHBOARD_OUTPUT = "DashboardUrl"
KEY_SECRET_OUTPUT = "EncordKeySecretArn"

# How far back the last producer run is looked for, and how many DLQ messages are read to count
# them by reason (the total comes from the queue's own count, whatever this limit).
PRODUCER_LOG_LOOKBACK_SECONDS = 24 * 3600
DLQ_SCAN_LIMIT = 1_000


@dataclass(frozen=True)
class StackOutputs:
    """The outputs and parameters of one stack, as describe_stacks returns them."""

    stack_name: str
    outputs: dict[str, str]
    parameters: dict[str, str]

    def output(self, key: str) -> str:
        """The output ``key``, or a ConfigurationError saying the stack needs redeploying."""
        value = self.outputs.get(key)
        if not value:
            raise ConfigurationError(
                f"Stack {self.stack_name!r} has no output {key}. It was deployed from an older "
                "template.yaml: redeploy it with `sam build && sam deploy`."
            )
        return value


def aws_session(region: str | None) -> Session:
    import boto3

    return boto3.session.Session(region_name=region)


def client(session: Session, service: str, endpoint_url: str | None) -> Any:
    from botocore.config import Config

    # Few retries: a status screen should answer quickly or say what is unreachable.
    config = Config(retries={"mode": "standard", "max_attempts": 2})
    return session.client(service, endpoint_url=endpoint_url, config=config)  # type: ignore[call-overload]


def read_stack(cloudformation: Any, stack_name: str) -> StackOutputs:
    """The stack's outputs and parameters; a missing stack is a ConfigurationError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "does not exist" in message:
            raise ConfigurationError(
                f"No stack named {stack_name!r} in region "
                f"{cloudformation.meta.region_name}: check --stack-name and --region."
            ) from None
        raise ConfigurationError(f"Could not read stack {stack_name!r}: {message}") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"Could not reach CloudFormation: {exc}") from None
    stack = stacks[0]
    return StackOutputs(
        stack_name=stack_name,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        parameters={p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])},
    )


def resolve_stack(
    stack_name: str, region: str | None = None, endpoint_url: str | None = None
) -> StackOutputs:
    session = aws_session(region)
    return read_stack(client(session, "cloudformation", endpoint_url), stack_name)


# ------------------------------------------------------------------------------ the report


@dataclass
class StatusReport:
    stack_name: str
    project_hash: str | None
    dashboard_url: str | None
    # Agent stage title -> tasks in it now; None with encord_error when Encord was not asked.
    waiting: dict[str, int] | None
    encord_error: str | None
    work_queue: dict[str, int]
    dlq_total: int
    dlq_by_reason: dict[str, int]
    leases: dict[str, int]
    expired_leases: int
    last_producer_run: dict[str, Any] | None
    alarms_in_alarm: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_status(
    stack: StackOutputs,
    *,
    session: Session,
    endpoint_url: str | None = None,
    encord: bool = True,
    now: float | None = None,
) -> StatusReport:
    now = time.time() if now is None else now
    sqs = client(session, "sqs", endpoint_url)
    work = _queue_counts(sqs, stack.output(WORK_QUEUE_OUTPUT))
    dlq_url = stack.output(DLQ_OUTPUT)
    dlq_total, by_reason = _dlq_counts(sqs, dlq_url)
    leases, expired = lease_counts(
        client(session, "dynamodb", endpoint_url), stack.output(LEASE_TABLE_OUTPUT), now
    )
    waiting: dict[str, int] | None = None
    encord_error: str | None = None
    project_hash = stack.parameters.get("ProjectHash")
    if encord:
        try:
            waiting = tasks_waiting(stack, project_hash)
        except AgentkitError as exc:
            encord_error = str(exc)
    else:
        encord_error = "not asked (--no-encord)"
    return StatusReport(
        stack_name=stack.stack_name,
        project_hash=project_hash,
        dashboard_url=stack.outputs.get(DASHBOARD_OUTPUT),
        waiting=waiting,
        encord_error=encord_error,
        work_queue=work,
        dlq_total=dlq_total,
        dlq_by_reason=by_reason,
        leases=leases,
        expired_leases=expired,
        last_producer_run=last_producer_run(
            client(session, "logs", endpoint_url), stack.output(PRODUCER_LOG_GROUP_OUTPUT), now
        ),
        alarms_in_alarm=alarms_in_alarm(
            client(session, "cloudwatch", endpoint_url), stack.output(ALARM_TOPIC_OUTPUT)
        ),
    )


def _queue_counts(sqs: Any, queue_url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


def _dlq_counts(sqs: Any, dlq_url: str) -> tuple[int, dict[str, int]]:
    from agent_core.pipeline.replay import inspect_dlq, queue_depth

    total = queue_depth(sqs, dlq_url)
    if total == 0:
        return 0, {}
    messages = inspect_dlq(sqs, dlq_url, max_messages=DLQ_SCAN_LIMIT, timeout_seconds=30.0)
    return total, dict(Counter(m.reason for m in messages))


def lease_counts(dynamodb: Any, table: str, now: float) -> tuple[dict[str, int], int]:
    """Live leases per state (every state listed), and how many have expired unreclaimed."""
    from agent_core.pipeline.leases import Lease, LeaseState

    counts = dict.fromkeys((s.value for s in LeaseState), 0)
    expired = 0
    paginator = dynamodb.get_paginator("scan")
    for page in paginator.paginate(
        TableName=table,
        ProjectionExpression="task_uuid, #s, expires_at",
        ExpressionAttributeNames={"#s": "state"},
    ):
        for item in page.get("Items", []):
            lease = Lease.from_item(item)
            if lease.is_live(now):
                counts[lease.state.value] += 1
            else:
                expired += 1
    return counts, expired


def tasks_waiting(stack: StackOutputs, project_hash: str | None) -> dict[str, int]:
    """Tasks in each agent stage of the project's workflow, as Encord lists them now."""
    from encord.workflow.stages.agent import AgentStage

    from agent_core.settings import EncordSettings, create_user_client

    if not project_hash:
        raise ConfigurationError(f"Stack {stack.stack_name!r} has no ProjectHash parameter.")
    settings = EncordSettings()
    updates: dict[str, Any] = {}
    # The key from the environment if there is one, else the secret the functions read.
    has_key = settings.ssh_key is not None or settings.ssh_key_file is not None
    if not has_key and not settings.ssh_key_secret_id and stack.outputs.get(KEY_SECRET_OUTPUT):
        updates["ssh_key_secret_id"] = stack.outputs[KEY_SECRET_OUTPUT]
    if "domain" not in settings.model_fields_set and stack.parameters.get("EncordDomain"):
        updates["domain"] = stack.parameters["EncordDomain"]
    client_ = create_user_client(settings.model_copy(update=updates))
    try:
        project = client_.get_project(project_hash)
        return {
            stage.title: sum(1 for _ in stage.get_tasks())
            for stage in project.workflow.stages
            if isinstance(stage, AgentStage)
        }
    except AgentkitError:
        raise
    except Exception as exc:  # the SDK's errors: show them in the report, not as a traceback
        raise ConfigurationError(
            f"Encord could not list the project's tasks ({type(exc).__name__}: {exc})"
        ) from None


def last_producer_run(logs: Any, log_group: str, now: float) -> dict[str, Any] | None:
    """The newest producer run's totals from its log line, or None if there is none in a day."""
    from botocore.exceptions import ClientError

    from agent_core.pipeline.observability import PRODUCER_RUN_DONE_LOG

    newest: dict[str, Any] | None = None
    kwargs: dict[str, Any] = {
        "logGroupName": log_group,
        "filterPattern": json.dumps(PRODUCER_RUN_DONE_LOG),
        "startTime": int((now - PRODUCER_LOG_LOOKBACK_SECONDS) * 1000),
    }
    try:
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            for event in page.get("events", []):
                if newest is None or event["timestamp"] >= newest["timestamp"]:
                    newest = event
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    if newest is None:
        return None
    try:
        line = json.loads(newest["message"])
    except ValueError:
        return None
    return {
        "finished_at": time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime(newest["timestamp"] / 1000)
        ),
        "age_seconds": round(now - newest["timestamp"] / 1000),
        "run_id": line.get("run_id"),
        "totals": line.get("totals") or {},
    }


def alarms_in_alarm(cloudwatch: Any, topic_arn: str) -> list[dict[str, str]]:
    """Alarms in state ALARM that notify the stack's topic (metric and composite alarms)."""
    found: list[dict[str, str]] = []
    paginator = cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(
        StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    ):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            if topic_arn in alarm.get("AlarmActions", []):
                found.append(
                    {
                        "name": alarm["AlarmName"],
                        "since": str(alarm.get("StateUpdatedTimestamp", "")),
                        "reason": str(alarm.get("StateReason", ""))[:200],
                    }
                )
    return sorted(found, key=lambda a: a["name"])


# ------------------------------------------------------------------------------ rendering


def render_status(report: StatusReport, out: Console) -> None:
    from rich.table import Table

    def section(title: str, rows: list[tuple[str, str]]) -> None:
        out.print(f"[bold]{title}[/bold]")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(min_width=2)
        grid.add_column()
        grid.add_column(justify="right")
        for name, value in rows:
            grid.add_row("", name, value)
        out.print(grid)

    out.print(f"[bold]Stack {report.stack_name}[/bold] (Encord project {report.project_hash})")
    if report.dashboard_url:
        out.print(f"Dashboard: {report.dashboard_url}")
    if report.waiting is None:
        waiting = [("not read", str(report.encord_error))]
    else:
        waiting = [(stage, str(count)) for stage, count in report.waiting.items()]
    section("Tasks in the agent stages (Encord)", waiting)
    queue = report.work_queue
    section(
        "Messages (SQS)",
        [
            ("work queue: waiting", str(queue["waiting"])),
            ("work queue: in flight or backing off", str(queue["in_flight"])),
            ("work queue: delayed", str(queue["delayed"])),
            ("dead-letter queue", str(report.dlq_total)),
            *[
                (f"  reason {reason}", str(count))
                for reason, count in sorted(report.dlq_by_reason.items())
            ],
        ],
    )
    section(
        "Task leases (DynamoDB)",
        [
            *[(state, str(count)) for state, count in report.leases.items()],
            ("expired, not yet removed", str(report.expired_leases)),
        ],
    )
    run = report.last_producer_run
    if run is None:
        section("Last producer run", [("none logged in the last 24 hours", "")])
    else:
        section(
            f"Last producer run: {run['finished_at']} ({run['age_seconds']}s ago)",
            [(k.replace("_", " "), str(v)) for k, v in run["totals"].items()],
        )
    alarms = [(a["name"], a["since"][:19]) for a in report.alarms_in_alarm]
    section("Alarms in ALARM", alarms or [("none", "")])


def status(
    stack_name: str | None = STACK_NAME_OPTION,
    region: str | None = REGION_OPTION,
    endpoint_url: str | None = ENDPOINT_URL_OPTION,
    encord: bool = typer.Option(
        True,
        "--encord/--no-encord",
        help="Count the tasks waiting on Encord (needs the Encord key, or access to its secret).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Show a deployed stack on one screen: tasks waiting, queues, DLQ, leases, producer, alarms."""
    if not stack_name:
        raise ConfigurationError("--stack-name is required (or set AGENTKIT_STACK_NAME).")
    session = aws_session(region)
    stack = read_stack(client(session, "cloudformation", endpoint_url), stack_name)
    report = collect_status(stack, session=session, endpoint_url=endpoint_url, encord=encord)
    if json_output:
        print_json(report.as_dict())
    else:
        render_status(report, console())


def outputs_or_options(
    stack_name: str | None,
    region: str | None,
    endpoint_url: str | None,
    given: Mapping[str, str | None],
) -> dict[str, str | None]:
    """Explicit values (options, environment) win; the stack's outputs fill the rest."""
    if not stack_name or all(given.values()):
        return dict(given)
    stack = resolve_stack(stack_name, region, endpoint_url)
    return {key: value or stack.outputs.get(key) for key, value in given.items()}
