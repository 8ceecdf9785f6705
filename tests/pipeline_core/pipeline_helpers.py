"""Helpers shared by the pipeline tests: real-shaped Lambda events and handler invocations."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_core.pipeline.context import LocalLambdaContext

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

MAX_RECEIVE_COUNT = 3
REGION = "us-east-1"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:agentkit-work"


def lambda_attributes(message: dict[str, Any]) -> dict[str, Any]:
    """SQS ReceiveMessage attributes in the lower-camel shape Lambda puts in its event."""
    converted: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        entry: dict[str, Any] = {
            "dataType": value["DataType"],
            "stringListValues": [],
            "binaryListValues": [],
        }
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            import base64

            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        converted[name] = entry
    return converted


def record_from_message(message: dict[str, Any], queue_arn: str = QUEUE_ARN) -> dict[str, Any]:
    attrs = message.get("Attributes", {})
    now_ms = str(int(time.time() * 1000))
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attrs.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attrs.get("SentTimestamp", now_ms),
            "SenderId": attrs.get("SenderId", "AIDAEXAMPLE"),
            "ApproximateFirstReceiveTimestamp": attrs.get(
                "ApproximateFirstReceiveTimestamp", now_ms
            ),
        },
        "messageAttributes": lambda_attributes(message),
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def synthetic_record(body: str, *, receive_count: int = 1) -> dict[str, Any]:
    """A record that never went through a queue (for bodies a queue would not take)."""
    return record_from_message(
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": f"synthetic-{uuid.uuid4()}",
            "Body": body,
            "Attributes": {"ApproximateReceiveCount": str(receive_count)},
        }
    )


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": [record_from_message(m) for m in messages]}


def context(timeout_ms: int = 60_000) -> LocalLambdaContext:
    return LocalLambdaContext(function_name="agentkit-consumer-test", timeout_ms=timeout_ms)


def invoke_consumer(event: dict[str, Any], timeout_ms: int = 60_000) -> dict[str, Any]:
    from handlers.consumer import lambda_handler

    return lambda_handler(event, context(timeout_ms))


def invoke_producer(timeout_ms: int = 60_000) -> dict[str, Any]:
    from handlers.producer import lambda_handler

    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/agentkit-schedule"],
        "detail": {},
    }
    return lambda_handler(event, context(timeout_ms))


def failure_ids(response: dict[str, Any]) -> set[str]:
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


@dataclass
class Pipeline:
    """The AWS resources of one test, and helpers to look at them."""

    sqs: SQSClient
    dynamodb: DynamoDBClient
    work_queue_url: str
    dlq_url: str
    table_name: str

    def receive(self, queue_url: str, *, max_messages: int = 100, wait: int = 0) -> list[Any]:
        """Receive up to ``max_messages`` (bounded loop), leaving them in flight."""
        messages: list[Any] = []
        for _ in range(max(1, max_messages // 10 + 2)):
            reply = self.sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(messages)),
                WaitTimeSeconds=wait,
                VisibilityTimeout=60,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            batch = reply.get("Messages", [])
            if not batch:
                break
            messages.extend(batch)
            if len(messages) >= max_messages:
                break
        return messages

    def counts(self, queue_url: str) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )

    def lease(self, task_uuid: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key={"task_uuid": {"S": task_uuid}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return {k: next(iter(v.values())) for k, v in item.items()}

    def lease_count(self) -> int:
        return int(self.dynamodb.scan(TableName=self.table_name, Select="COUNT")["Count"])


def create_pipeline(sqs: SQSClient, dynamodb: DynamoDBClient) -> Pipeline:
    suffix = uuid.uuid4().hex[:12]
    dlq_url = sqs.create_queue(QueueName=f"agentkit-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    work_queue_url = sqs.create_queue(
        QueueName=f"agentkit-work-{suffix}",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
            ),
        },
    )["QueueUrl"]
    table_name = f"agentkit-leases-{suffix}"
    dynamodb.create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "task_uuid", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "task_uuid", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return Pipeline(sqs, dynamodb, work_queue_url, dlq_url, table_name)
