"""Helpers shared by the operations commands: environment overrides, clients, output."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import typer

from agent_core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from rich.console import Console


# Options several commands take, written once. typer reads an option's default object afresh for
# every command, so one object can serve them all.
ENDPOINT_URL_OPTION = typer.Option(
    None,
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL",
    help="AWS endpoint for every service (moto locally); leave unset against AWS.",
)
AGENT_MODULE_OPTION = typer.Option(
    None, "--agent-module", envvar="AGENT_MODULE", help="Runner to load: 'package.module:attr'."
)
LEASE_TABLE_OPTION = typer.Option(
    None, "--lease-table", envvar="LEASE_TABLE_NAME", help="DynamoDB table of task leases."
)

STACK_NAME_OPTION = typer.Option(
    None,
    "--stack-name",
    envvar="AGENTKIT_STACK_NAME",
    help="CloudFormation stack deployed from template.yaml; its outputs say where everything is.",
)
REGION_OPTION = typer.Option(
    None,
    "--region",
    envvar="AWS_REGION",
    help="AWS region of the stack (default: your AWS config).",
)


def apply_env(values: Mapping[str, str | int | float | None]) -> None:
    """Put command-line overrides into the environment, where the handlers read their settings."""
    changed = False
    for name, value in values.items():
        if value is None:
            continue
        os.environ[name] = str(value)
        changed = True
    if changed:
        # Clients and runners cached under the older environment (endpoint, project, key).
        from agent_core.process_state import reset_process_caches

        reset_process_caches()


def required_option(value: str | None, option: str, envvar: str) -> str:
    """``value``, or a ConfigurationError naming the option and its environment variable."""
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
