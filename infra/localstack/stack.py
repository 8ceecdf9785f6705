"""``LocalStack``: the whole pipeline on one machine with no cloud account.

Composes the Encord emulator (real HTTP; the unmodified SDK talks to it), a moto server for SQS,
DynamoDB and Secrets Manager, the resources of template.yaml created on it, and the process
environment the real handlers read. ``producer_tick()`` calls the producer handler with a
scheduled event; ``drain()`` runs the local event-source poller feeding the consumer handler.

    with LocalStack(fixture="demo") as stack:
        stack.producer_tick()
        stats = stack.drain()
        print(stack.dlq_messages())
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agent_core.process_state import reset_process_caches as reset_handler_state
from infra.localstack.cloud import LocalCloud, delete_stack, register_stack, shipped_logs
from infra.localstack.events import scheduled_event
from infra.localstack.moto import MotoServer, patched_environ
from infra.localstack.poller import LocalLambdaContext, LocalPoller, PollerStats
from infra.localstack.resources import (
    LocalResources,
    PipelineShape,
    create_resources,
    delete_resources,
    unique_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from agent_core.pipeline.replay import DlqFilter, DlqMessage, ReplayResult
    from infra.emulator import Emulator, FixtureSpec, SeededFixture


class LocalStack:
    """Emulator + moto + queues/table + handler environment, torn down on exit."""

    def __init__(
        self,
        *,
        fixture: str | Path | dict[str, Any] | FixtureSpec | None = "demo",
        agent_module: str = "agents.example:runner",
        shape: PipelineShape | None = None,
        template_path: Path | None = None,
        emulator: Emulator | None = None,
        moto: MotoServer | None = None,
        project_hash: str | None = None,
        use_secret: bool = False,
        retry_backoff_base_seconds: int = 1,
        retry_backoff_max_seconds: int = 4,
        quiet_handlers: bool = True,
        extra_env: Mapping[str, str | None] | None = None,
        stack_name: str | None = None,
        cloud_stack: bool = False,
    ) -> None:
        """``emulator``/``moto``: reuse running ones (not stopped on exit); else start new ones.

        ``fixture`` is seeded into the emulator unless ``project_hash`` names an existing
        project. ``shape`` defaults to template.yaml's values. ``quiet_handlers`` keeps the
        handlers' JSON logs and EMF metrics off the terminal (warnings still show).
        ``cloud_stack`` registers a CloudFormation stack named ``stack_name`` (unique by default)
        on moto with template.yaml's outputs, the producer's log group and the alarms, for
        ``agentkit status --stack-name`` (off by default: moto's CloudFormation costs seconds).
        """
        self._fixture = fixture
        self.agent_module = agent_module
        self._shape = shape
        self._template_path = template_path
        self._emulator = emulator
        self._moto = moto
        self._project_hash = project_hash
        self._use_secret = use_secret
        self._backoff = (retry_backoff_base_seconds, retry_backoff_max_seconds)
        self._quiet = quiet_handlers
        self._extra_env = dict(extra_env or {})
        self._owns_emulator = emulator is None
        self._owns_moto = moto is None
        self._exit = contextlib.ExitStack()
        self.seeded: SeededFixture | None = None
        self.resources: LocalResources | None = None
        self.env: dict[str, str | None] = {}
        self.shape = shape or PipelineShape()
        self.stack_name = stack_name or unique_prefix("agentkit-local")
        self.cloud: LocalCloud | None = None
        self._cloud_stack = cloud_stack

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self._shape is None:
            self.shape = PipelineShape.from_template(self._template_path)
        if self._emulator is None:
            from infra.emulator import Emulator

            self._emulator = Emulator.start(fixture=None)
            self._exit.callback(self._emulator.stop)
        if self._project_hash is None:
            if self._fixture is None:
                raise ValueError("give a fixture to seed or the project_hash of a seeded project")
            self.seeded = self._emulator.seed(self._fixture)
            self._project_hash = self.seeded.project_hash
        if self._moto is None:
            self._moto = MotoServer.start()
            self._exit.callback(self._moto.stop)
        moto = self._moto
        key = self._emulator.ssh_private_key if self._use_secret else None
        self.resources = create_resources(self.shape, encord_key=key, client_factory=moto.client)
        resources = self.resources
        self._exit.callback(lambda: delete_resources(resources, client_factory=moto.client))
        if self._cloud_stack:
            cloud = register_stack(
                moto.client,
                self.stack_name,
                resources,
                parameters={
                    "ProjectHash": self._project_hash,
                    "EncordDomain": self._emulator.domain,
                },
                template_path=self._template_path,
            )
            self.cloud = cloud
            self._exit.callback(lambda: delete_stack(moto.client, cloud))

        env: dict[str, str | None] = {
            # Template defaults first (service name, namespace, lease TTL...), local values over.
            "POWERTOOLS_SERVICE_NAME": "agentkit-local",
            "POWERTOOLS_METRICS_NAMESPACE": "agentkit-local",
            **self.shape.environment,
        }
        env.update(moto.aws_env())
        env.update(resources.handler_env())
        env.update(
            {
                "AGENT_MODULE": self.agent_module,
                "PROJECT_HASH": self._project_hash,
                "ENCORD_DOMAIN": self._emulator.domain,
                "ENCORD_SSH_KEY": None,
                "ENCORD_SSH_KEY_FILE": None
                if self._use_secret
                else str(self._emulator.ssh_key_path),
                "MAX_RECEIVE_COUNT": str(self.shape.max_receive_count),
                "RETRY_BACKOFF_BASE_SECONDS": str(self._backoff[0]),
                "RETRY_BACKOFF_MAX_SECONDS": str(self._backoff[1]),
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        if not self._use_secret:
            env["ENCORD_SSH_KEY_SECRET_ID"] = None
        if self._quiet:
            env.update(
                {
                    "POWERTOOLS_LOG_LEVEL": "WARNING",
                    "LOG_LEVEL": "WARNING",
                    "POWERTOOLS_METRICS_DISABLED": "true",
                }
            )
        env.update(self._extra_env)
        self.env = env
        self._exit.enter_context(patched_environ(env))
        # Registered after the environment, so it runs first on exit: caches built under this
        # stack's endpoints must not outlive it.
        self._exit.callback(reset_handler_state)
        reset_handler_state(self.agent_module, self._project_hash)

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- accessors ---------------------------------------------------------------------------

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            raise RuntimeError("the stack is not started")
        return self._emulator

    @property
    def moto(self) -> MotoServer:
        if self._moto is None:
            raise RuntimeError("the stack is not started")
        return self._moto

    @property
    def project_hash(self) -> str:
        if self._project_hash is None:
            raise RuntimeError("the stack is not started")
        return self._project_hash

    @property
    def queues(self) -> LocalResources:
        if self.resources is None:
            raise RuntimeError("the stack is not started")
        return self.resources

    def sqs(self) -> SQSClient:
        client: SQSClient = self.moto.client("sqs")
        return client

    # -- running the pipeline ----------------------------------------------------------------

    def producer_tick(self, *, timeout_seconds: float = 300.0) -> Any:
        """One scheduled invocation of the real producer handler; returns its summary.

        With ``cloud_stack``, its log lines also go to the stack's producer log group, as Lambda
        would ship them.
        """
        from handlers.producer import lambda_handler, logger

        context = LocalLambdaContext(
            function_name="ProducerFunction", timeout_seconds=timeout_seconds
        )
        if self.cloud is None:
            return lambda_handler(scheduled_event(), context)
        with shipped_logs(logger, self.moto.client("logs"), self.cloud.producer_log_group):
            return lambda_handler(scheduled_event(), context)

    def poller(self, **overrides: Any) -> LocalPoller:
        """A poller on the work queue feeding the real consumer handler, shaped by the template.

        ``overrides`` are LocalPoller arguments (batch_size, faults, on_invocation, ...).
        """
        from handlers.consumer import lambda_handler

        return LocalPoller.for_shape(
            lambda_handler,
            queue_url=self.queues.work_queue_url,
            shape=self.shape,
            client_factory=self.moto.client,
            **overrides,
        )

    def drain(self, *, timeout_seconds: float = 120.0, **overrides: Any) -> PollerStats:
        return self.poller(**overrides).drain(timeout_seconds=timeout_seconds)

    def queue_depth(self, dlq: bool = False) -> int:
        from agent_core.pipeline.replay import queue_depth

        url = self.queues.dead_letter_queue_url if dlq else self.queues.work_queue_url
        return queue_depth(self.sqs(), url)

    def dlq_messages(self, dlq_filter: DlqFilter | None = None) -> list[DlqMessage]:
        from agent_core.pipeline.replay import inspect_dlq

        return inspect_dlq(self.sqs(), self.queues.dead_letter_queue_url, dlq_filter=dlq_filter)

    def replay_dlq(self, **kwargs: Any) -> ReplayResult:
        from agent_core.pipeline.replay import replay_dlq

        return replay_dlq(
            self.sqs(),
            self.queues.dead_letter_queue_url,
            self.queues.work_queue_url,
            **kwargs,
        )

    # -- reports from the emulator -----------------------------------------------------------

    def pathway_counts(self) -> dict[str, dict[str, int]]:
        """Agent proceeds per stage and pathway, from the emulator's action history."""
        state = self.emulator.state
        counts: dict[str, dict[str, int]] = {}
        project = state.project(self.project_hash)
        for task in project.tasks_by_data.values():
            for event in state.pathway_actions(task.uuid):
                stage = event.from_stage_title or event.from_stage_uuid or "?"
                pathway = event.pathway_name or event.pathway_uuid or "?"
                per_stage = counts.setdefault(stage, {})
                per_stage[pathway] = per_stage.get(pathway, 0) + 1
        return counts

    def cli_env(self) -> dict[str, str]:
        """The environment for running ``agentkit`` against this stack in a subprocess."""
        return {k: v for k, v in self.env.items() if v is not None}
