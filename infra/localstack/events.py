"""Lambda event payloads shaped exactly like the ones AWS delivers (SQS batches, schedules).

Shared by the local poller (which turns received SQS messages into records) and by
``agentkit events`` (which writes sample events for ``sam local invoke``).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from infra.localstack.moto import LOCAL_ACCOUNT_ID, LOCAL_REGION

# The system attributes Lambda copies from SQS into each record (others are dropped).
LAMBDA_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "DeadLetterQueueSourceArn",
)


def queue_arn_for(name: str, region: str = LOCAL_REGION, account: str = LOCAL_ACCOUNT_ID) -> str:
    return f"arn:aws:sqs:{region}:{account}:{name}"


def lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """One SQS MessageAttributeValue (boto3 shape) in Lambda's lower-camel record shape."""
    out: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [
            base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])
        ],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(
            raw if isinstance(raw, bytes) else raw.encode()
        ).decode()
    return out


def md5_of_message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """SQS's MD5 over message attributes (boto3 shape), as ReceiveMessage reports it."""

    def chunk(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    digest = hashlib.md5()
    for name in sorted(attributes):
        value = attributes[name]
        digest.update(chunk(name.encode()) + chunk(str(value["DataType"]).encode()))
        if "StringValue" in value:
            digest.update(b"\x01" + chunk(str(value["StringValue"]).encode()))
        elif "BinaryValue" in value:
            raw = value["BinaryValue"]
            digest.update(b"\x02" + chunk(raw if isinstance(raw, bytes) else str(raw).encode()))
    return digest.hexdigest()


def record_from_message(
    message: Mapping[str, Any], *, queue_arn: str, region: str = LOCAL_REGION
) -> dict[str, Any]:
    """An SQS event record from a boto3 ReceiveMessage entry (received with All attributes)."""
    system = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: system[k] for k in LAMBDA_RECORD_ATTRIBUTES if k in system},
        "messageAttributes": {
            name: lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def synthetic_record(
    body: str,
    *,
    queue_arn: str,
    region: str = LOCAL_REGION,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    receive_count: int = 1,
    sent_at: datetime | None = None,
    string_attributes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A record that was never on a queue (sample events, handler tests without SQS)."""
    sent_ms = str(int((sent_at or datetime.now(UTC)).timestamp() * 1000))
    message: dict[str, Any] = {
        "MessageId": message_id or str(uuid.uuid4()),
        # A receipt handle is opaque; this one is recognisably fake if it reaches a real queue.
        "ReceiptHandle": receipt_handle or "local-" + base64.b64encode(uuid.uuid4().bytes).decode(),
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": sent_ms,
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": sent_ms,
        },
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (string_attributes or {}).items()
        },
    }
    if message["MessageAttributes"]:
        message["MD5OfMessageAttributes"] = md5_of_message_attributes(message["MessageAttributes"])
    return record_from_message(message, queue_arn=queue_arn, region=region)


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def scheduled_event(
    *,
    rule_name: str = "agentkit-producer-schedule",
    region: str = LOCAL_REGION,
    account: str = LOCAL_ACCOUNT_ID,
    time: datetime | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An EventBridge "Scheduled Event" as a schedule rule delivers it to the producer."""
    when = (time or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"],
        "detail": {},
    }
