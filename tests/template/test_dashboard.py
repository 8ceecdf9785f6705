"""Operating the deployed stack, checked on the translated template: the dashboard and the alarms
watch metrics the code really emits, every alarm notifies, every taggable resource is tagged,
parameters are grouped, and the outputs `agentkit status` reads exist.

The expected metric names, namespace and dimensions come from the code
(agent_core/pipeline/observability.py) and from what the real handlers print as EMF in a local
run, never retyped here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from agent_core.pipeline.observability import (
    CONSUMER_METRICS,
    PRODUCER_METRICS,
    SERVICE_DIMENSION,
    STAGE_DIMENSION,
    STAGE_DURATION_METRIC,
)

if TYPE_CHECKING:
    from infra.emulator import Emulator

REPO = Path(__file__).resolve().parents[2]
KIT_METRICS = {*CONSUMER_METRICS, *PRODUCER_METRICS, STAGE_DURATION_METRIC}
TAG_KEYS = {"agentkit:stack", "agentkit:project"}
# Resources SAM generates without a way to tag them from the template. The stack tags of
# samconfig.toml (which CloudFormation copies onto every resource that takes tags) reach them.
TAGGED_ONLY_BY_STACK_TAGS = {
    # A SAM `Schedule` event has no Tags, and PropagateTags does not reach its rule
    # (samtranslator 1.115).
    "ProducerFunctionPoll": "AWS::Events::Rule",
}


@pytest.fixture(scope="module")
def renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_dashboard", REPO / "scripts" / "render_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def of_type(template: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] in types}


def function_env(translated: dict[str, Any]) -> list[dict[str, Any]]:
    functions = of_type(translated, "AWS::Lambda::Function").values()
    return [f["Properties"]["Environment"]["Variables"] for f in functions]


@pytest.fixture(scope="module")
def body(translated: dict[str, Any], renderer: ModuleType) -> dict[str, Any]:
    """The dashboard JSON of the translated template, with the parameters' defaults."""
    defaults = {k: v.get("Default") for k, v in translated["Parameters"].items()}
    result: dict[str, Any] = renderer.dashboard_body(translated, defaults)
    return result


def metric_widgets(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from (w["properties"] for w in body["widgets"] if w["type"] == "metric")


def searches(body: dict[str, Any], renderer: ModuleType) -> list[dict[str, Any]]:
    found = []
    for properties in metric_widgets(body):
        for metric in properties["metrics"]:
            if isinstance(metric[0], dict):
                terms = renderer.search_terms(metric[0]["expression"])
                assert terms is not None, metric[0]["expression"]
                found.append(terms)
    return found


def kit_namespace(translated: dict[str, Any]) -> str:
    (namespace,) = {env["POWERTOOLS_METRICS_NAMESPACE"] for env in function_env(translated)}
    assert isinstance(namespace, str)
    return namespace


# ------------------------------------------------------------------------------ dashboard


def test_per_stage_widgets_search_the_metrics_the_code_emits(
    translated: dict[str, Any], body: dict[str, Any], renderer: ModuleType
) -> None:
    terms = searches(body, renderer)
    assert terms
    # The service dimension is the stack name because the functions' service name is.
    for env in function_env(translated):
        assert env["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    for term in terms:
        assert term["namespace"] == kit_namespace(translated)
        assert set(term["dimensions"]) == {SERVICE_DIMENSION, STAGE_DIMENSION}
        assert term["metric"] in KIT_METRICS
        assert term["filters"] == {SERVICE_DIMENSION: renderer.STACK_NAME}
    shown = {term["metric"] for term in terms}
    # What the issue asks to see per stage: processed, failed, skipped, poison; enqueued per run.
    assert {"processed", "failed", "skipped", "poison", "enqueued"} <= shown


def test_aws_metric_widgets_name_this_stacks_resources(
    translated: dict[str, Any], body: dict[str, Any]
) -> None:
    plain = [m for p in metric_widgets(body) for m in p["metrics"] if isinstance(m[0], str)]
    assert plain
    resources = set(translated["Resources"])
    for namespace, name, dimension, value, *_ in plain:
        assert namespace in ("AWS/SQS", "AWS/Lambda"), name
        assert dimension == {"AWS/SQS": "QueueName", "AWS/Lambda": "FunctionName"}[namespace]
        # Placeholders look like <WorkQueue.QueueName> or <ConsumerFunction>.
        logical_id = re.fullmatch(r"<(\w+)(?:\.\w+)?>", value)
        assert logical_id and logical_id.group(1) in resources, value
    watched = {(m[1], m[3]) for m in plain}
    for wanted in (
        ("ApproximateNumberOfMessagesVisible", "<WorkQueue.QueueName>"),
        ("ApproximateAgeOfOldestMessage", "<WorkQueue.QueueName>"),
        ("ApproximateNumberOfMessagesVisible", "<DeadLetterQueue.QueueName>"),
        ("Duration", "<ConsumerFunction>"),
        ("ConcurrentExecutions", "<ConsumerFunction>"),
        ("Throttles", "<ConsumerFunction>"),
        ("Duration", "<ProducerFunction>"),
    ):
        assert wanted in watched, wanted


def test_concurrency_and_timeouts_are_drawn_from_the_parameters(
    translated: dict[str, Any], body: dict[str, Any]
) -> None:
    lines = {
        p["title"]: {a["label"]: a["value"] for a in p.get("annotations", {}).get("horizontal", [])}
        for p in metric_widgets(body)
    }
    defaults = {k: v.get("Default") for k, v in translated["Parameters"].items()}
    assert lines["Consumer concurrency"]["MaximumConcurrency"] == defaults["MaximumConcurrency"]
    assert lines["Consumer duration (ms)"]["timeout"] == defaults["ConsumerTimeout"] * 1000
    assert lines["Producer duration (ms)"]["timeout"] == defaults["ProducerTimeout"] * 1000


def test_widgets_fit_the_grid_without_overlapping(body: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for widget in body["widgets"]:
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24
        cells = {
            (widget["x"] + dx, widget["y"] + dy)
            for dx in range(widget["width"])
            for dy in range(widget["height"])
        }
        assert not cells & taken, widget
        taken |= cells


def test_alarm_widget_shows_every_alarm(translated: dict[str, Any], body: dict[str, Any]) -> None:
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    shown = {re.fullmatch(r"<(\w+)\.Arn>", a).group(1) for a in widget["properties"]["alarms"]}  # type: ignore[union-attr]
    assert shown == set(of_type(translated, "AWS::CloudWatch::Alarm"))


def test_dashboard_url_is_an_output(translated: dict[str, Any]) -> None:
    url = translated["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "#dashboards" in url and "${Dashboard}" in url


def test_docs_picture_is_rendered_from_the_current_template(renderer: ModuleType) -> None:
    svg = renderer.render_svg(renderer.template_dashboard_body())
    assert (REPO / "docs" / "dashboard.svg").read_text() == svg, (
        "docs/dashboard.svg is out of date: run .venv/bin/python scripts/render_dashboard.py"
    )
    # Every widget's title is in the picture.
    for widget in renderer.template_dashboard_body()["widgets"]:
        title = widget["properties"].get("title")
        if title:
            assert title.replace("&", "&amp;") in svg


# ------------------------------------------------------------------------------ alarms


INSIGHTS = re.compile(
    r'SELECT (?P<stat>\w+)\((?P<metric>\w+)\) FROM SCHEMA\("(?P<namespace>[^"]+)", '
    r"(?P<dimensions>[^)]+)\) WHERE (?P<key>\w+) = '\$\{AWS::StackName\}'"
)


def test_every_alarm_notifies_the_topic_on_alarm_and_ok(translated: dict[str, Any]) -> None:
    alarms = of_type(translated, "AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm")
    assert len(alarms) >= 10
    for logical_id, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties.get("ActionsEnabled", True), logical_id
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert properties["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert len(properties["AlarmDescription"]) > 60, logical_id
        if "Metrics" in properties:
            # Exactly one query is the alarm's value.
            assert sum(1 for m in properties["Metrics"] if m.get("ReturnData")) == 1, logical_id


def test_kit_metric_alarms_query_emitted_metrics_of_this_stack(translated: dict[str, Any]) -> None:
    queried: dict[str, set[str]] = {}
    for logical_id, alarm in of_type(translated, "AWS::CloudWatch::Alarm").items():
        for query in alarm["Properties"].get("Metrics", []):
            expression = query.get("Expression")
            text = expression["Fn::Sub"] if isinstance(expression, dict) else expression or ""
            if not text.startswith("SELECT"):
                continue
            match = INSIGHTS.fullmatch(text)
            assert match, text
            assert match["namespace"] == kit_namespace(translated)
            dimensions = {d.strip() for d in match["dimensions"].split(",")}
            assert dimensions == {SERVICE_DIMENSION, STAGE_DIMENSION}
            assert match["key"] == SERVICE_DIMENSION
            assert match["metric"] in KIT_METRICS
            queried.setdefault(logical_id, set()).add(match["metric"])
    assert queried == {
        "TasksFailingAlarm": {"failed"},
        "PoisonMessagesAlarm": {"poison"},
        "ProducerStageErrorsAlarm": {"stage_errors"},
        "TasksWaitingNothingEnqueuedAlarm": {"listed", "enqueued"},
    }


def test_throttle_and_stuck_producer_alarms_watch_both_queues_and_functions(
    translated: dict[str, Any],
) -> None:
    def watched(logical_id: str) -> set[tuple[str, str]]:
        metrics = translated["Resources"][logical_id]["Properties"]["Metrics"]
        found = set()
        for query in metrics:
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                (dimension,) = metric["Dimensions"]
                value = dimension["Value"]
                target = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
                found.add((metric["MetricName"], target))
        return found

    assert watched("FunctionThrottlesAlarm") == {
        ("Throttles", "ConsumerFunction"),
        ("Throttles", "ProducerFunction"),
    }
    # Every place a leased task's message can be: waiting, in flight, delayed, or parked.
    assert watched("TasksWaitingNothingEnqueuedAlarm") == {
        ("ApproximateNumberOfMessagesVisible", "WorkQueue"),
        ("ApproximateNumberOfMessagesNotVisible", "WorkQueue"),
        ("ApproximateNumberOfMessagesDelayed", "WorkQueue"),
        ("ApproximateNumberOfMessagesVisible", "DeadLetterQueue"),
    }
    (stuck,) = [
        q
        for q in translated["Resources"]["TasksWaitingNothingEnqueuedAlarm"]["Properties"][
            "Metrics"
        ]
        if q.get("ReturnData")
    ]
    expression = " ".join(stuck["Expression"].split())
    for term in ("listed > 0", "enqueued == 0", "FILL(waiting, 0)", "FILL(parked, 0)"):
        assert term in expression


def test_the_handlers_emit_what_the_dashboard_and_alarms_use(
    emulator: Emulator, translated: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A local producer tick and drain with metrics on: the EMF the real handlers print."""
    from infra.localstack.moto import MotoServer
    from infra.localstack.resources import PipelineShape
    from infra.localstack.stack import LocalStack

    namespace = kit_namespace(translated)
    shape = PipelineShape.from_template().replace(maximum_batching_window_seconds=0.2)
    # The end-to-end tests' agent (two stages, no model): quick, and every outcome the
    # consumer reports per stage shows up in its documents whatever happened.
    e2e = str(REPO / "tests" / "pipeline_e2e")
    if e2e not in sys.path:
        sys.path.insert(0, e2e)
    from e2e_agents import E2E_FIXTURE_NO_FAILURES
    from e2e_helpers import AGENT_MODULE

    with (
        MotoServer.start() as moto,
        LocalStack(
            fixture=E2E_FIXTURE_NO_FAILURES,
            agent_module=AGENT_MODULE,
            emulator=emulator,
            moto=moto,
            shape=shape,
            quiet_handlers=False,
            extra_env={
                "POWERTOOLS_SERVICE_NAME": "teststack",
                "POWERTOOLS_METRICS_NAMESPACE": namespace,
                "POWERTOOLS_LOG_LEVEL": "ERROR",
            },
        ) as stack,
    ):
        capsys.readouterr()
        stack.producer_tick()
        stack.drain(timeout_seconds=60)
        printed = capsys.readouterr().out
    documents = []
    for line in printed.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    assert documents, "no EMF printed"
    emitted: set[str] = set()
    for document in documents:
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == namespace
        assert [set(d) for d in directive["Dimensions"]] == [{SERVICE_DIMENSION, STAGE_DIMENSION}]
        assert document[SERVICE_DIMENSION] == "teststack"
        emitted |= {m["Name"] for m in directive["Metrics"]}
    # The constants are exactly what is emitted, so the checks above are checks against the code.
    assert emitted == KIT_METRICS


# ------------------------------------------------------------------------------ tags, groups


@functools.cache
def taggable(resource_type: str) -> bool:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    return bool(schema.get("tagging", {}).get("taggable")) and "Tags" in schema["properties"]


def tag_keys(tags: Any) -> set[str]:
    if isinstance(tags, dict):
        return set(tags)
    return {t["Key"] for t in tags}


def test_every_taggable_resource_is_tagged(translated: dict[str, Any]) -> None:
    checked = 0
    untagged = {}
    for logical_id, resource in translated["Resources"].items():
        if not taggable(resource["Type"]):
            continue
        checked += 1
        tags = resource.get("Properties", {}).get("Tags")
        if logical_id in TAGGED_ONLY_BY_STACK_TAGS and not tags:
            untagged[logical_id] = resource["Type"]
            continue
        assert tags, f"{logical_id} ({resource['Type']}) has no Tags"
        assert tag_keys(tags) >= TAG_KEYS, logical_id
    assert checked >= 20
    # Stays honest when SAM learns to tag them: then the exception must go.
    assert untagged == TAGGED_ONLY_BY_STACK_TAGS


def test_samconfig_tags_the_stack() -> None:
    import tomllib

    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    tags = config["default"]["deploy"]["parameters"]["tags"]
    assert re.search(r'(^|\s)agentkit:app="?agentkit"?', tags)


def test_every_parameter_is_in_exactly_one_group(sam_template: dict[str, Any]) -> None:
    interface = sam_template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [p for group in interface["ParameterGroups"] for p in group["Parameters"]]
    assert sorted(grouped) == sorted(sam_template["Parameters"])
    for name in interface.get("ParameterLabels", {}):
        assert name in sam_template["Parameters"]


def test_outputs_status_reads_exist(translated: dict[str, Any]) -> None:
    from agent_core.commands import status

    names = {
        value
        for key, value in vars(status).items()
        if key.endswith("_OUTPUT") and isinstance(value, str)
    }
    assert len(names) >= 7
    assert names <= set(translated["Outputs"])


def test_handlers_take_their_service_name_from_the_environment() -> None:
    """The service dimension the dashboard filters on is POWERTOOLS_SERVICE_NAME, in logs too."""
    import subprocess

    code = """
import os, sys
os.environ.pop("POWERTOOLS_SERVICE_NAME", None)
import handlers.consumer, handlers.producer
print(handlers.producer.logger.service, handlers.consumer.logger.service)
for name in ("handlers.consumer", "handlers.producer"):
    del sys.modules[name]
os.environ["POWERTOOLS_SERVICE_NAME"] = "my-stack"
import handlers.consumer, handlers.producer
print(handlers.producer.logger.service, handlers.consumer.logger.service)
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == [
        "agentkit-producer agentkit-consumer",
        "my-stack my-stack",
    ]
