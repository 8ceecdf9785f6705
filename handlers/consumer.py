"""Lambda entry point of the consumer: an SQS batch in, ``{"batchItemFailures": [...]}`` out.

Configuration is the environment (AGENT_MODULE, WORK_QUEUE_URL, DEAD_LETTER_QUEUE_URL,
LEASE_TABLE_NAME, the Encord key, ...); the work is agent_core.pipeline.consume.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from agent_core.pipeline.consume import CONSUMER_SERVICE, handle_sqs_event, warm_up
from agent_core.pipeline.context import LambdaContextLike, ensure_context
from agent_core.pipeline.observability import capture_handler, make_tracer, service_name
from agent_core.redaction import escaping

# Importing agent_core (above) already made the vision archive importable, if the build has one.

# POWERTOOLS_SERVICE_NAME wins: an explicit service= would override it.
logger = Logger(service=service_name(CONSUMER_SERVICE))
warm_up()
tracer = make_tracer(CONSUMER_SERVICE)


@logger.inject_lambda_context(clear_state=True)
@capture_handler(tracer)
def _handle(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return handle_sqs_event(event, context, logger=logger)


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    try:
        result: dict[str, Any] = _handle(event, ensure_context(context))
    except BaseException as exc:
        # The runtime logs what escapes (errorType, errorMessage) past every log filter: only a
        # redacted copy may leave, without the original's cause, arguments or traceback.
        raise escaping(exc) from None
    return result
