"""The DLQ message format, in one place: what the consumer parks (body, attributes, limits).

``agentkit dlq inspect``/``replay`` read the same attributes back (``DlqAttributes`` in
agent_core.message names them; ``replay.DlqMessage.from_sqs`` parses them).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from agent_core.message import DlqAttributes
from agent_core.pipeline.sqs import (
    SQS_MAX_MESSAGE_ATTRIBUTES,
    OutgoingMessage,
    SqsLimits,
    message_size,
)
from agent_core.redaction import redact

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# Error text kept in a DLQ attribute; the traceback goes to the logs, not the message.
MAX_DLQ_ERROR_CHARS = 4_000
# Why the consumer parked a message: it can never be processed, or it failed for good (its
# last allowed run failed, or its earlier runs were killed before they could report).
DlqReason = Literal["poison", "failed"]


def lambda_to_sqs_attributes(
    attributes: Mapping[str, Any] | None,
) -> dict[str, MessageAttributeValueTypeDef]:
    """Message attributes as Lambda's event shows them, in the shape SendMessage takes."""
    converted: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in (attributes or {}).items():
        if not isinstance(value, Mapping):
            continue
        data_type = str(value.get("dataType") or value.get("DataType") or "String")
        string_value = value.get("stringValue", value.get("StringValue"))
        binary_value = value.get("binaryValue", value.get("BinaryValue"))
        if string_value is not None:
            converted[name] = {"DataType": data_type, "StringValue": str(string_value)}
        elif binary_value is not None:
            raw = (
                binary_value if isinstance(binary_value, bytes) else base64.b64decode(binary_value)
            )
            converted[name] = {"DataType": data_type, "BinaryValue": raw}
    return converted


def _string(value: str) -> MessageAttributeValueTypeDef:
    return {"DataType": "String", "StringValue": value}


def build_dlq_message(
    record: Mapping[str, Any],
    *,
    reason: DlqReason,
    error: str,
    error_type: str,
    receive_count: int,
    stage_uuid: str | None = None,
    task_uuid: str | None = None,
    limits: SqsLimits | None = None,
    now: datetime | None = None,
) -> OutgoingMessage:
    """The DLQ copy of a record: its original body, with why it is there in the attributes."""
    limits = limits or SqsLimits()
    message_id = str(record.get("messageId", ""))
    body = str(record.get("body", ""))
    ours: dict[str, MessageAttributeValueTypeDef] = {
        DlqAttributes.REASON: _string(reason),
        DlqAttributes.ERROR_TYPE: _string(error_type[:256] or "Error"),
        DlqAttributes.SOURCE_MESSAGE_ID: _string(message_id or "unknown"),
        DlqAttributes.RECEIVE_COUNT: {"DataType": "Number", "StringValue": str(receive_count)},
        DlqAttributes.FAILED_AT: _string((now or datetime.now(UTC)).isoformat()),
    }
    if stage_uuid:
        ours[DlqAttributes.STAGE_UUID] = _string(stage_uuid)
    if task_uuid:
        ours[DlqAttributes.TASK_UUID] = _string(task_uuid)
    attributes: dict[str, MessageAttributeValueTypeDef] = dict(ours)
    # Keep the original attributes (e.g. the replay marker) in the room SQS leaves; one slot
    # stays free for the error itself.
    for name, value in lambda_to_sqs_attributes(record.get("messageAttributes")).items():
        if name in attributes or name == DlqAttributes.ERROR:
            continue
        if len(attributes) >= SQS_MAX_MESSAGE_ATTRIBUTES - 1:
            break
        attributes[name] = value

    error_text = redact(error) or "(no message)"
    room = limits.max_message_bytes - message_size(body, attributes)
    room -= len(DlqAttributes.ERROR.encode()) + len(b"String")
    if room < 64:
        # The body alone (nearly) fills a message: keep a description of it instead, so the
        # reason still reaches the DLQ. Only an oversize poison message gets here.
        raw = body.encode()
        body = json.dumps(
            {
                "agentkit_oversize_body": {
                    "bytes": len(raw),
                    "sha256": hashlib.sha256(raw).hexdigest(),
                    "head": raw[:2000].decode(errors="replace"),
                }
            }
        )
        room = limits.max_message_bytes - message_size(body, attributes) - 64
    error_text = _fit(error_text, min(room, MAX_DLQ_ERROR_CHARS * 4), MAX_DLQ_ERROR_CHARS)
    attributes[DlqAttributes.ERROR] = _string(error_text)
    return OutgoingMessage(key=message_id, body=body, attributes=attributes)


def _fit(text: str, max_bytes: int, max_chars: int) -> str:
    marker = "...[truncated]"
    if len(text) <= max_chars and len(text.encode()) <= max_bytes:
        return text
    text = text[: max(0, max_chars - len(marker))]
    while text and len(text.encode()) + len(marker) > max_bytes:
        text = text[: len(text) * 3 // 4]
    return text + marker
