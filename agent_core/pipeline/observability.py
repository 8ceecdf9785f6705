"""Powertools logging, tracing and metrics as the two handlers use them.

Metrics go out through ``EphemeralMetrics`` (one EMF document per stage, flushed at once) rather
than the ``Metrics`` singleton: its metric set is shared by every instance in the process, and the
local poller runs several consumer invocations in threads of one process.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NAMESPACE = "agentkit"

# The EMF metrics, one source for the handlers, the dashboard tests and `agentkit status`. Each
# document carries the dimensions SERVICE_DIMENSION (Powertools adds it from the service name)
# and STAGE_DIMENSION.
SERVICE_DIMENSION = "service"
STAGE_DIMENSION = "stage"
# Per stage and consumer invocation, unit Count: processed = every message, then one per status
# (failed also counts dead_lettered: a run that failed, whatever happened to it next).
CONSUMER_METRICS = (
    "processed",
    "succeeded",
    "failed",
    "skipped",
    "poison",
    "deferred",
    "dead_lettered",
    "busy",
)
# Per stage and consumer invocation: wall time of the stage's batch, unit Milliseconds.
STAGE_DURATION_METRIC = "duration"
# Per stage and producer run, unit Count.
PRODUCER_METRICS = (
    "listed",
    "enqueued",
    "skipped_in_flight",
    "failed_to_send",
    "lease_errors",
    "left_stage",
    "truncated",
    "stage_errors",
)
_log = logging.getLogger(__name__)

# The log line that ends every producer run, with its totals: `agentkit status` looks it up.
PRODUCER_RUN_DONE_LOG = "producer: run done"


def service_name(default: str) -> str:
    """POWERTOOLS_SERVICE_NAME (the template sets the stack name), else the handler's default."""
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or default


def tracing_enabled() -> bool:
    """Whether a Powertools Tracer would record anything in this process.

    Powertools' own rule: off with POWERTOOLS_TRACE_DISABLED, outside Lambda (no
    LAMBDA_TASK_ROOT) and under ``sam local`` or Chalice's local mode.
    """
    from aws_lambda_powertools.shared import constants
    from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

    if resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false")):
        return False
    if not os.getenv(constants.LAMBDA_TASK_ROOT_ENV):
        return False
    return not (os.getenv(constants.SAM_LOCAL_ENV) or os.getenv(constants.CHALICE_LOCAL_ENV))


def make_tracer(service: str) -> Tracer | None:
    """A Powertools Tracer, or None when tracing is off or the X-Ray SDK is not installed.

    Tracing is optional: a function packaged without aws-xray-sdk must still run, untraced.
    A disabled Tracer still imports aws_xray_sdk, whose recorder builds two botocore clients at
    import (~0.3 s and ~15 MB of every cold start), so when tracing is off none is created.
    """
    if not tracing_enabled():
        return None
    try:
        from aws_lambda_powertools import Tracer

        return Tracer(service=service_name(service))
    except ImportError:
        _log.warning("aws-xray-sdk is not installed; the function runs without X-Ray tracing")
        return None


def capture_handler(tracer: Tracer | None) -> Callable[[F], F]:
    """``tracer.capture_lambda_handler`` when tracing is available, else the handler as is."""

    def decorate(handler: F) -> F:
        if tracer is None:
            return handler
        # Responses and errors can carry task data; traces record only timing and annotations.
        traced = tracer.capture_lambda_handler(handler, capture_response=False, capture_error=False)
        return cast(F, functools.wraps(handler)(traced))

    return decorate


def emit_metrics(
    per_stage: Mapping[str, Mapping[str, float]],
    *,
    service: str,
    durations_ms: Mapping[str, float] | None = None,
) -> None:
    """One EMF document per stage: counts (unit Count) with the stage as a dimension."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    for stage, counts in per_stage.items():
        metrics = EphemeralMetrics(namespace=namespace, service=service_name(service))
        metrics.add_dimension(name=STAGE_DIMENSION, value=stage or "unknown")
        for name, value in counts.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        if durations_ms and stage in durations_ms:
            metrics.add_metric(
                name=STAGE_DURATION_METRIC, unit=MetricUnit.Milliseconds, value=durations_ms[stage]
            )
        metrics.flush_metrics()
