"""Lambda entry point of the producer, invoked by the EventBridge schedule.

Enqueues one message per task of every stage the runner implements that is not already in
flight, and returns the run's summary per stage. The work is agent_core.pipeline.fanout.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from agent_core.pipeline.context import LambdaContextLike, ensure_context
from agent_core.pipeline.fanout import PRODUCER_SERVICE, handle_scheduled_event
from agent_core.pipeline.observability import capture_handler, make_tracer, service_name
from agent_core.redaction import escaping

# POWERTOOLS_SERVICE_NAME wins: an explicit service= would override it.
logger = Logger(service=service_name(PRODUCER_SERVICE))
tracer = make_tracer(PRODUCER_SERVICE)


@logger.inject_lambda_context(clear_state=True, log_event=False)
@capture_handler(tracer)
def _handle(event: dict[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    return handle_scheduled_event(event, context, logger=logger)


def lambda_handler(event: dict[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    try:
        result: dict[str, Any] = _handle(event or {}, ensure_context(context))
    except BaseException as exc:
        # The runtime logs what escapes (errorType, errorMessage) past every log filter: only a
        # redacted copy may leave, without the original's cause, arguments or traceback.
        raise escaping(exc) from None
    return result
