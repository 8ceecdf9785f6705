"""What a deployed stack has around its queues and table, registered on the moto server.

moto cannot run the SAM stack, so the local stack registers a small CloudFormation stack whose
outputs carry template.yaml's output names and point at the local queues, table and log group.
``agentkit status --stack-name`` and ``agentkit dlq --stack-name`` then take the same
``describe_stacks`` path locally as against AWS. moto's CloudFormation cannot create alarms, so
the template's alarms are created directly, named as CloudFormation names them
(``{stack}-{LogicalId}``) and notifying the stack's topic; moto never evaluates them, so their
metric is a placeholder and their state is whatever a test sets. The producer's log lines reach
the log group as Lambda would ship them (``shipped_logs``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_core.commands.status import (
    ALARM_TOPIC_OUTPUT,
    DLQ_OUTPUT,
    LEASE_TABLE_OUTPUT,
    PRODUCER_LOG_GROUP_OUTPUT,
    WORK_QUEUE_OUTPUT,
)
from infra.localstack.resources import ClientFactory, LocalResources

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

_LOG_STREAM = "local"


@dataclass(frozen=True)
class LocalCloud:
    stack_name: str
    topic_arn: str
    producer_log_group: str
    # Logical id in template.yaml -> the local alarm's name.
    alarm_names: dict[str, str]


def template_alarm_ids(template_path: Path | None = None) -> list[str]:
    from infra.template_config import DEFAULT_TEMPLATE_PATH, _read_template

    template = _read_template(template_path or DEFAULT_TEMPLATE_PATH)
    return sorted(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm"
    )


def register_stack(
    client_factory: ClientFactory,
    stack_name: str,
    resources: LocalResources,
    *,
    parameters: dict[str, str],
    template_path: Path | None = None,
) -> LocalCloud:
    """Create the stack (outputs, topic), the producer's log group and the alarms."""
    log_group = f"/agentkit/{stack_name}/producer"
    logs = client_factory("logs")
    logs.create_log_group(logGroupName=log_group)
    logs.create_log_stream(logGroupName=log_group, logStreamName=_LOG_STREAM)

    outputs = {
        WORK_QUEUE_OUTPUT: resources.work_queue_url,
        DLQ_OUTPUT: resources.dead_letter_queue_url,
        LEASE_TABLE_OUTPUT: resources.lease_table_name,
        PRODUCER_LOG_GROUP_OUTPUT: log_group,
    }
    body = {
        "Parameters": {name: {"Type": "String"} for name in parameters},
        "Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            **{name: {"Value": value} for name, value in outputs.items()},
            ALARM_TOPIC_OUTPUT: {"Value": {"Ref": "AlarmTopic"}},
        },
    }
    cloudformation = client_factory("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    topic_arn = next(
        o["OutputValue"] for o in described["Outputs"] if o["OutputKey"] == ALARM_TOPIC_OUTPUT
    )

    cloudwatch = client_factory("cloudwatch")
    alarm_names: dict[str, str] = {}
    for logical_id in template_alarm_ids(template_path):
        name = f"{stack_name}-{logical_id}"
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            AlarmActions=[topic_arn],
            OKActions=[topic_arn],
            Namespace="agentkit/local-placeholder",
            MetricName=logical_id,
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
        )
        alarm_names[logical_id] = name
    return LocalCloud(
        stack_name=stack_name,
        topic_arn=topic_arn,
        producer_log_group=log_group,
        alarm_names=alarm_names,
    )


def delete_stack(client_factory: ClientFactory, cloud: LocalCloud) -> None:
    """Best effort: moto shares state across servers in a process, so leave nothing behind."""
    with contextlib.suppress(Exception):
        client_factory("cloudwatch").delete_alarms(AlarmNames=list(cloud.alarm_names.values()))
    with contextlib.suppress(Exception):
        client_factory("logs").delete_log_group(logGroupName=cloud.producer_log_group)
    with contextlib.suppress(Exception):
        client_factory("cloudformation").delete_stack(StackName=cloud.stack_name)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((int(record.created * 1000), self.format(record)))


@contextlib.contextmanager
def shipped_logs(logger: Logger, logs: Any, log_group: str) -> Iterator[None]:
    """Copy what ``logger`` logs at INFO and above into ``log_group``, as Lambda ships stdout.

    The terminal keeps its own level (a quiet local stack shows warnings only): the logger is
    opened to INFO for the copy, and its own handlers are raised to the level it had.
    """
    std_logger = logging.getLogger(logger.name)
    collect = _Collect()
    collect.setFormatter(logger.registered_formatter)
    previous = std_logger.level
    raised = [(h, h.level) for h in std_logger.handlers]
    for handler, level in raised:
        handler.setLevel(max(level, previous))
    std_logger.setLevel(min(previous, logging.INFO) if previous else logging.INFO)
    std_logger.addHandler(collect)
    try:
        yield
    finally:
        std_logger.removeHandler(collect)
        std_logger.setLevel(previous)
        for handler, level in raised:
            handler.setLevel(level)
        if collect.lines:
            logs.put_log_events(
                logGroupName=log_group,
                logStreamName=_LOG_STREAM,
                logEvents=[{"timestamp": t, "message": m} for t, m in collect.lines],
            )
