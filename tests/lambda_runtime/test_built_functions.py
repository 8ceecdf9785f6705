"""The artifacts `sam build` makes, run as Lambda runs them (lambda_rie.py), against the local stack.

Each function runs under the Runtime Interface Emulator with awslambdaric on CPython 3.12, its build
folder as the read-only code root, the dependencies layer as /opt/python, only the runtime's boto3
beside them, and the environment template.yaml sets (with the local queue URLs, table, secret and
Encord domain). The producer is invoked with events/scheduled.json, the consumer with real batches
received from the work queue and with events/sqs-batch.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from lambda_rie import REPO, LambdaFunction, running, tree_snapshot

if TYPE_CHECKING:
    from infra.emulator import Emulator
    from infra.localstack.moto import MotoServer
    from infra.localstack.stack import LocalStack

EVENTS = REPO / "events"
DEMO_AGENT = "agents.example:runner"
STARTER_AGENT = "agents.starter:runner"
# The demo workflow with a handful of items: frame_0013.jpg is the demo agent's deliberate failure.
PRE_LABEL_IMAGES = 14
QUALITY_CHECK_IMAGES = 2


def small_demo_fixture() -> dict[str, Any]:
    from infra.emulator.fixtures import demo_workflow

    return {
        "title": "RIE demo project",
        "workflow": demo_workflow().model_dump(),
        "media": [
            {
                "kind": "image",
                "count": PRE_LABEL_IMAGES,
                "title": "frame_{index:04d}.jpg",
                "stage": "pre-label",
            },
            {
                "kind": "image",
                "count": QUALITY_CHECK_IMAGES,
                "title": "qc_{index:04d}.jpg",
                "stage": "quality-check",
                "prelabelled": QUALITY_CHECK_IMAGES,
            },
        ],
    }


@dataclass
class Deployment:
    """A seeded project with its queues/table/secret on moto (a LocalStack), and the two built
    functions running under the RIE."""

    stack: LocalStack
    producer: LambdaFunction
    consumer: LambdaFunction


def function_environment(stack: LocalStack) -> dict[str, str]:
    """Globals.Function.Environment of template.yaml for this stack's parameters, with the local
    queue URLs, table, key secret and endpoints where the stack would have its resources'."""
    from infra.template_config import load_template_config

    config = load_template_config(
        parameter_overrides={
            "ProjectHash": stack.project_hash,
            "AgentModule": stack.agent_module,
            "EncordDomain": stack.emulator.domain,
        }
    )
    env = dict(config.resolved_environment())
    env.update(stack.queues.handler_env())  # WORK_QUEUE_URL, ..., ENCORD_SSH_KEY_SECRET_ID
    env.update({k: v for k, v in stack.moto.aws_env().items() if v is not None})
    missing = set(config.environment_names) - set(env)
    assert not missing, f"template variables without a local value: {missing}"
    # Quieter logs; X-Ray has no daemon here (as under `sam local invoke`, which sets the same).
    env.update({"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_TRACE_DISABLED": "true"})
    return env


@pytest.fixture
def deploy(emulator: Emulator, moto_server: MotoServer, tmp_path: Path) -> Iterator[Any]:
    """deploy(build_dir, agent_module) -> Deployment; everything started is stopped afterwards."""
    from infra.localstack.stack import LocalStack
    from infra.template_config import load_template_config

    config = load_template_config()
    timeouts = {
        "ProducerFunction": config.producer_timeout_seconds,
        "ConsumerFunction": config.consumer_timeout_seconds,
    }
    with ExitStack() as exits:

        def start(build_dir: Path, agent_module: str) -> Deployment:
            stack = LocalStack(
                emulator=emulator,
                moto=moto_server,
                fixture=small_demo_fixture(),
                agent_module=agent_module,
                use_secret=True,  # the key comes from Secrets Manager, as in AWS
            )
            exits.enter_context(stack)
            env = function_environment(stack)
            functions = {}
            for name, timeout in timeouts.items():
                code = build_dir / name
                before = tree_snapshot(code)
                function = LambdaFunction(
                    code,
                    f"handlers/{name.removesuffix('Function').lower()}.lambda_handler",
                    env,
                    layer_dir=build_dir / "DependenciesLayer",
                    scratch=tmp_path,
                    timeout_seconds=timeout,
                    name=name,
                )
                # Lambda's code root is read-only: nothing may have been written into it.
                exits.callback(_assert_unchanged, code, before)
                functions[name] = exits.enter_context(running(function))
            return Deployment(stack, functions["ProducerFunction"], functions["ConsumerFunction"])

        yield start


def _assert_unchanged(root: Path, before: dict[str, tuple[int, int]]) -> None:
    after = tree_snapshot(root)
    assert after == before, f"{root} changed: {sorted(set(after) ^ set(before))[:10]}"


# ------------------------------------------------------------------------------ checks


def assert_enqueued(summary: Any, expected: int) -> None:
    """The producer's answer is a run summary that enqueued ``expected`` tasks, with no error."""
    assert isinstance(summary, dict) and "errorType" not in summary, (
        f"the producer failed: {json.dumps(summary)[:2000]}"
    )
    totals = summary.get("totals") or {}
    assert totals.get("enqueued") == expected, json.dumps(summary)[:2000]
    stages = summary.get("stages") or {}
    stage_list = stages.values() if isinstance(stages, dict) else stages
    assert not [s for s in stage_list if s.get("error")], json.dumps(summary)[:2000]


def run_queue_once(deployment: Deployment) -> tuple[int, dict[str, str]]:
    """Receive every message once in real batches and invoke the consumer with each batch.

    Returns (messages delivered, message id -> data title of each reported failure). Successes are
    deleted as the event source mapping does; failures stay for their retry.
    """
    from infra.localstack.events import record_from_message, sqs_event

    sqs = deployment.stack.sqs()
    url = deployment.stack.queues.work_queue_url
    delivered = 0
    failures: dict[str, str] = {}
    for _ in range(20):  # bounded: 16 messages in batches of up to 10
        received = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            break
        delivered += len(received)
        event = sqs_event(
            [
                record_from_message(m, queue_arn=deployment.stack.queues.work_queue_arn)
                for m in received
            ]
        )
        response = deployment.consumer.invoke(event)
        assert isinstance(response, dict) and "batchItemFailures" in response, (
            f"the consumer failed: {json.dumps(response)[:2000]}\n{deployment.consumer.log()}"
        )
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        by_id = {m["MessageId"]: m for m in received}
        assert failed <= set(by_id)
        for message_id in failed:
            failures[message_id] = json.loads(by_id[message_id]["Body"])["task"]["data_title"]
        done = [m for m in received if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
    return delivered, failures


def assert_sample_batch_parks_its_poison(deployment: Deployment) -> None:
    """events/sqs-batch.json as committed: its poison message goes to the DLQ, not to a retry."""
    event = json.loads((EVENTS / "sqs-batch.json").read_text())
    poison_ids = {r["messageId"] for r in event["Records"] if not r["body"].rstrip().endswith("}")}
    assert poison_ids, "events/sqs-batch.json should carry a truncated (poison) message"
    response = deployment.consumer.invoke(event)
    assert isinstance(response, dict) and "batchItemFailures" in response, json.dumps(response)
    reported = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    assert not reported & poison_ids, "poison is parked, not retried"
    parked = [m for m in deployment.stack.dlq_messages() if m.reason == "poison"]
    assert {m.source_message_id for m in parked} >= poison_ids, parked


# ------------------------------------------------------------------------------ tests


def test_sam_build_makes_one_dependencies_layer_and_two_code_packages(default_build: Path) -> None:
    layer = default_build / "DependenciesLayer" / "python"
    assert (layer / "encord").is_dir() and (layer / "pydantic").is_dir()
    assert (layer / "_agentkit_vendor" / "vision.zip").exists()  # numpy + OpenCV, zipped
    assert not (layer / "numpy").exists() and not (layer / "boto3").exists()
    for function in ("ProducerFunction", "ConsumerFunction"):
        package = default_build / function
        assert sorted(p.name for p in package.iterdir()) == ["agent_core", "agents", "handlers"]
        assert not list(package.rglob("__pycache__"))
    built = (default_build / "template.yaml").read_text()
    assert "DependenciesLayer" in built


def test_default_build_runs_the_demo_agent_end_to_end(default_build: Path, deploy: Any) -> None:
    deployment: Deployment = deploy(default_build, DEMO_AGENT)
    scheduled = json.loads((EVENTS / "scheduled.json").read_text())
    summary = deployment.producer.timed_invoke(scheduled, "producer cold invoke (vision layer)")
    # The producer imported the demo agent, which imports cv2 and numpy from the layer's archive.
    assert_enqueued(summary, PRE_LABEL_IMAGES + QUALITY_CHECK_IMAGES)
    # Warm: everything is leased and in flight, so nothing is enqueued twice.
    again = deployment.producer.timed_invoke(scheduled, "producer warm invoke (vision layer)")
    assert_enqueued(again, 0)

    delivered, failures = run_queue_once(deployment)
    assert delivered == PRE_LABEL_IMAGES + QUALITY_CHECK_IMAGES
    # The demo agent's deliberate failures, and nothing else, come back as batchItemFailures.
    assert sorted(failures.values()) == ["frame_0013.jpg"]
    taken = deployment.stack.pathway_counts()
    assert sum(sum(per_stage.values()) for per_stage in taken.values()) == delivered - 1, taken

    assert_sample_batch_parks_its_poison(deployment)


def test_lean_build_runs_a_numpy_free_agent_end_to_end(lean_build: Path, deploy: Any) -> None:
    layer = lean_build / "DependenciesLayer" / "python"
    assert not (layer / "numpy").exists() and not (layer / "_agentkit_vendor").exists()
    deployment: Deployment = deploy(lean_build, STARTER_AGENT)
    scheduled = json.loads((EVENTS / "scheduled.json").read_text())
    summary = deployment.producer.timed_invoke(scheduled, "producer cold invoke (lean layer)")
    assert_enqueued(summary, PRE_LABEL_IMAGES)  # the starter serves pre-label only
    again = deployment.producer.timed_invoke(scheduled, "producer warm invoke (lean layer)")
    assert_enqueued(again, 0)

    delivered, failures = run_queue_once(deployment)
    assert delivered == PRE_LABEL_IMAGES and failures == {}
    assert deployment.stack.pathway_counts() == {"pre-label": {"annotate": PRE_LABEL_IMAGES}}

    assert_sample_batch_parks_its_poison(deployment)


def test_the_check_fails_when_the_producer_cannot_import_the_agent(
    lean_build: Path, deploy: Any
) -> None:
    # The lean layer has no OpenCV: the demo agent cannot be imported, as in the bug this guards
    # against. The same assertion the passing tests use must reject the producer's answer.
    deployment: Deployment = deploy(lean_build, DEMO_AGENT)
    summary = deployment.producer.invoke(json.loads((EVENTS / "scheduled.json").read_text()))
    with pytest.raises(AssertionError, match="the producer failed"):
        assert_enqueued(summary, PRE_LABEL_IMAGES + QUALITY_CHECK_IMAGES)
    assert summary["errorType"] == "ConfigurationError"
    assert "cv2" in summary["errorMessage"]
    assert deployment.stack.queue_depth() == 0
