"""Return-value parsing, stage registration rules and lazy imports, without Encord I/O."""

import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from encord.workflow.stages.agent import AgentPathway, AgentStage

from agent_core import Runner, TaskAgentReturnStruct
from agent_core.exceptions import ConfigurationError, InvalidReturnError, PathwayNotFoundError
from agent_core.runner_base import RunnerAgent, WorkItem, _apply_result

REPO = Path(__file__).resolve().parents[2]
COMPLETE = AgentPathway(uuid=uuid4(), name="complete", destination_uuid=uuid4())
REJECT = AgentPathway(uuid=uuid4(), name="reject", destination_uuid=uuid4())
# A real SDK stage object; its workflow client is never used by these tests.
STAGE = AgentStage(
    _workflow_client=None,  # type: ignore[arg-type]
    uuid=uuid4(),
    title="Agent 1",
    pathways=[COMPLETE, REJECT],
)


def agent_for(func: object) -> RunnerAgent:
    return RunnerAgent(identity=STAGE.uuid, callable=func)  # type: ignore[arg-type]


def apply(result: object) -> WorkItem:
    item = WorkItem(item_id="1", task_uuid=str(uuid4()))
    _apply_result(result, item, STAGE, agent_for(lambda: None))
    return item


@pytest.mark.parametrize(
    "returned",
    ["complete", COMPLETE.uuid, str(COMPLETE.uuid), str(COMPLETE.uuid).upper()],
)
def test_pathway_by_name_uuid_or_uuid_string(returned: object) -> None:
    assert apply(returned).pathway == COMPLETE


def test_none_leaves_the_task_in_the_stage() -> None:
    item = apply(None)
    assert item.pathway is None and item.save_row is None and item.priority is None


def test_unknown_pathway_names_the_valid_ones() -> None:
    with pytest.raises(PathwayNotFoundError) as info:
        apply("done")
    message = str(info.value)
    assert "'done'" in message and '"complete"' in message and '"reject"' in message
    assert str(COMPLETE.uuid) in message
    with pytest.raises(PathwayNotFoundError):
        apply(uuid4())


@pytest.mark.parametrize("returned", [1, True, ["complete"], {"pathway": "complete"}])
def test_wrong_return_type(returned: object) -> None:
    with pytest.raises(InvalidReturnError, match="TaskAgentReturnStruct"):
        apply(returned)


def test_return_struct_pathway_and_priority_need_a_label_row() -> None:
    assert apply(TaskAgentReturnStruct(pathway="reject")).pathway == REJECT
    with pytest.raises(InvalidReturnError, match="will_set_priority=True"):
        apply(TaskAgentReturnStruct(pathway="complete", label_row_priority=0.5))
    # A priority of 0 is not applied (encord-agents tests it for truth), so needs no label row.
    assert apply(TaskAgentReturnStruct(pathway="reject", label_row_priority=0.0)).priority is None


def test_stage_registration_without_project_keeps_order_and_refuses_duplicates() -> None:
    runner = Runner()

    @runner.stage("stage_1")
    def first() -> str:
        return "next"

    @runner.stage("stage_2")
    def second() -> str:
        return "next"

    with pytest.raises(ConfigurationError, match="overwrite=True"):

        @runner.stage("stage_1")
        def again() -> str:
            return "next"

    @runner.stage("stage_1", overwrite=True)
    def replaced() -> str:
        return "other"

    assert [a.printable_name for a in runner.agents] == ["stage_1", "stage_2"]
    assert runner.agents[0].callable is replaced
    uuid_stage = uuid4()
    runner.stage(str(uuid_stage))(first)
    assert runner.agents[-1].identity == UUID(str(uuid_stage))


def test_runner_without_a_project_says_how_to_give_one() -> None:
    runner = Runner()

    @runner.stage("Agent 1")
    def agent() -> None: ...

    with pytest.raises(ConfigurationError, match="--project-hash"):
        runner()
    with pytest.raises(ConfigurationError, match="not a UUID"):
        runner(project_hash="not-a-hash")


def test_importing_the_library_does_not_import_numpy_cv2_or_the_sdk() -> None:
    code = (
        "import sys, json\n"
        "import agent_core, agent_core.queue_runner, agent_core.runner, agent_core.dependencies\n"
        "from agent_core import Runner, QueueRunner, Depends, TaskAgentReturnStruct\n"
        "from agent_core.models import BatchItem, TaskOutcome, Frame\n"
        "from agent_core.dependencies import dep_video_iterator, dep_single_frame, dep_asset\n"
        "print(json.dumps([m for m in ('numpy', 'cv2', 'encord') if m in sys.modules]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
