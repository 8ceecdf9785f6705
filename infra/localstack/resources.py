"""The cloud resources of template.yaml, created on a moto server (or any SQS/DynamoDB endpoint).

The queue shape (batch size, redrive, visibility, retention, concurrency) is read from the SAM
template's parameter defaults through ``infra.template_config`` so that a local run behaves like
the deployed stack; tests may override single values (e.g. a short visibility timeout).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_core.exceptions import ConfigurationError

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class PipelineShape:
    """What the local stack needs from template.yaml (defaults mirror the template's)."""

    batch_size: int = 10
    maximum_batching_window_seconds: float = 5.0
    max_receive_count: int = 5
    consumer_timeout_seconds: int = 120
    visibility_timeout_seconds: int = 720
    dlq_retention_seconds: int = 1_209_600
    maximum_concurrency: int = 5
    schedule_expression: str = "rate(5 minutes)"
    lease_table_key: str = "task_uuid"
    lease_ttl_attribute: str = "expires_at"
    work_queue_retention_seconds: int = 345_600
    # The functions' environment variables that have a value without a stack (template Globals).
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_template(cls, path: Path | None = None) -> PipelineShape:
        """Read the shape from template.yaml; a missing or broken template is a ConfigurationError."""
        from infra.template_config import load_template_config

        config = load_template_config(path) if path is not None else load_template_config()
        values: dict[str, Any] = {
            f.name: getattr(config, f.name)
            for f in dataclasses.fields(cls)
            if f.name != "environment"
        }
        values["environment"] = config.resolved_environment()
        return cls(**values)

    def replace(self, **changes: Any) -> PipelineShape:
        """A copy with some values changed; None values are ignored (handy for CLI options)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_client_factory(service: str) -> Any:
    """boto3 clients from the environment (AWS_ENDPOINT_URL points them at moto locally)."""
    import boto3

    return boto3.client(service)  # type: ignore[call-overload]


@dataclass(frozen=True)
class LocalResources:
    """Names and addresses of the created resources, and the handler environment naming them."""

    work_queue_url: str
    work_queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    lease_table_name: str
    secret_id: str | None = None

    def handler_env(self) -> dict[str, str]:
        env = {
            "WORK_QUEUE_URL": self.work_queue_url,
            "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue_url,
            "LEASE_TABLE_NAME": self.lease_table_name,
        }
        if self.secret_id is not None:
            env["ENCORD_SSH_KEY_SECRET_ID"] = self.secret_id
        return env


def unique_prefix(base: str = "agentkit") -> str:
    # moto shares state across servers in a process: unique names keep stacks apart.
    return f"{base}-{uuid.uuid4().hex[:8]}"


def create_resources(
    shape: PipelineShape,
    *,
    prefix: str | None = None,
    encord_key: str | None = None,
    client_factory: ClientFactory = default_client_factory,
) -> LocalResources:
    """Create the work queue, its DLQ, the lease table and (if a key is given) the key secret."""
    if shape.visibility_timeout_seconds < shape.consumer_timeout_seconds:
        raise ConfigurationError(
            f"visibility timeout {shape.visibility_timeout_seconds}s is shorter than the consumer "
            f"timeout {shape.consumer_timeout_seconds}s: messages would be redelivered while "
            "still being processed. Raise the visibility timeout (AWS advises 6x the timeout)."
        )
    prefix = prefix or unique_prefix()
    sqs = client_factory("sqs")
    dlq_url: str = sqs.create_queue(
        QueueName=f"{prefix}-dlq",
        Attributes={"MessageRetentionPeriod": str(shape.dlq_retention_seconds)},
    )["QueueUrl"]
    dlq_arn = queue_arn(sqs, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(shape.max_receive_count)}
    work_url: str = sqs.create_queue(
        QueueName=f"{prefix}-work",
        Attributes={
            "VisibilityTimeout": str(shape.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(shape.work_queue_retention_seconds),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    work_arn = queue_arn(sqs, work_url)

    table_name = f"{prefix}-leases"
    dynamodb = client_factory("dynamodb")
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": shape.lease_table_key, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": shape.lease_table_key, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": shape.lease_ttl_attribute},
    )

    secret_id: str | None = None
    if encord_key is not None:
        secrets = client_factory("secretsmanager")
        secret_id = secrets.create_secret(Name=f"{prefix}/encord-ssh-key", SecretString=encord_key)[
            "ARN"
        ]
    return LocalResources(
        work_queue_url=work_url,
        work_queue_arn=work_arn,
        dead_letter_queue_url=dlq_url,
        dead_letter_queue_arn=dlq_arn,
        lease_table_name=table_name,
        secret_id=secret_id,
    )


def delete_resources(
    resources: LocalResources, *, client_factory: ClientFactory = default_client_factory
) -> None:
    """Remove what create_resources made (best effort: a half-created stack is still cleaned)."""
    sqs = client_factory("sqs")
    for url in (resources.work_queue_url, resources.dead_letter_queue_url):
        _ignore_missing(functools.partial(sqs.delete_queue, QueueUrl=url))
    dynamodb = client_factory("dynamodb")
    _ignore_missing(lambda: dynamodb.delete_table(TableName=resources.lease_table_name))
    if resources.secret_id is not None:
        secrets = client_factory("secretsmanager")
        _ignore_missing(
            lambda: secrets.delete_secret(
                SecretId=resources.secret_id, ForceDeleteWithoutRecovery=True
            )
        )


def queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _ignore_missing(call: Callable[[], Any]) -> None:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if "NonExistent" not in code and "NotFound" not in code:
            raise
