"""Helpers shared by the operations commands: environment overrides, clients, output."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from rich.console import Console

    from infra.localstack.resources import PipelineShape


def apply_env(values: Mapping[str, str | int | float | None]) -> None:
    """Put command-line overrides into the environment, where the handlers read their settings."""
    changed = False
    for name, value in values.items():
        if value is None:
            continue
        os.environ[name] = str(value)
        changed = True
    if changed:
        reset_process_caches()


def reset_process_caches() -> None:
    """Forget clients/runners cached under an older environment (endpoint, project, key)."""
    from infra.localstack.stack import reset_handler_state

    reset_handler_state()


def require(value: str | None, option: str, envvar: str) -> str:
    if not value:
        raise ConfigurationError(f"{option} is required: pass it or set {envvar}.")
    return value


def sqs_client(endpoint_url: str | None = None, region: str | None = None) -> SQSClient:
    import boto3
    from botocore.config import Config

    # Few retries: an endpoint without an API (moto and StartMessageMoveTask) answers 500, and
    # the default retry budget would make every replay wait for it.
    config = Config(retries={"mode": "standard", "max_attempts": 2})
    client: SQSClient = boto3.session.Session().client(
        "sqs", endpoint_url=endpoint_url, region_name=region, config=config
    )
    return client


def load_shape(template: Path | None) -> PipelineShape:
    """The queue/function shape from template.yaml, or the template's defaults if it is absent."""
    from infra.localstack.resources import PipelineShape
    from infra.template_config import DEFAULT_TEMPLATE_PATH

    if template is None and not DEFAULT_TEMPLATE_PATH.exists():
        # An installed kit without the repository's template: use the template's defaults.
        return PipelineShape()
    return PipelineShape.from_template(template)


@contextlib.contextmanager
def handler_output_to_stderr() -> Iterator[None]:
    """Send what the handlers print (JSON logs, EMF metrics) to stderr while they run.

    Lambda handlers log to stdout; on the command line stdout is for the command's own output
    (a report, or --json for scripts). The handler modules must be first imported inside this
    block, as Powertools binds its log stream when the logger is created.
    """
    with contextlib.redirect_stdout(sys.stderr):
        yield


def print_json(data: Any) -> None:
    # Plain print, not rich: --json output is for machines and must not be re-wrapped.
    print(json.dumps(data, indent=2, default=str))


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Bound to the stream now: a console made before handler_output_to_stderr() keeps writing
    # to the real stdout inside it.
    return Console(file=sys.stderr if stderr else sys.stdout, highlight=False)


def summary_rows(summary: Any) -> list[tuple[str, dict[str, Any]]]:
    """Flatten a producer summary into (stage, counters) rows, whatever its exact nesting."""
    if isinstance(summary, Mapping):
        stages = summary.get("stages", summary)
        if isinstance(stages, Mapping):
            rows = [(str(k), dict(v)) for k, v in stages.items() if isinstance(v, Mapping)]
            if rows:
                return rows
        if isinstance(stages, list):
            return [
                (str(s.get("stage_name") or s.get("stage") or s.get("stage_uuid") or i), dict(s))
                for i, s in enumerate(stages)
                if isinstance(s, Mapping)
            ]
    return []
