"""Helpers for the agent_core tests: building batch items from a seeded emulator project."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

if TYPE_CHECKING:
    from agent_core.models import BatchItem
    from agent_core.queue_runner import QueueRunner


def make_batch_items(
    runner: QueueRunner,
    stage: str,
    count: int,
    *,
    with_metadata: bool = False,
    verify_in_stage: bool = True,
) -> list[BatchItem]:
    """What a producer would enqueue: task specs (and label-row metadata) of ``count`` tasks."""
    from encord.workflow.stages.agent import AgentStage

    from agent_core.encord_io import list_label_row_metadata, metadata_to_dict
    from agent_core.models import BatchItem

    assert runner.project is not None
    agent_stage = runner.project.workflow.get_stage(name=stage, type_=AgentStage)
    tasks = list(agent_stage.get_tasks())[:count]
    assert len(tasks) == count, f"only {len(tasks)} tasks in {stage!r}"
    metadata: dict[str, dict[str, Any]] = {}
    if with_metadata:
        for meta in list_label_row_metadata(runner.project, [t.data_hash for t in tasks]):
            metadata[str(meta.data_hash)] = metadata_to_dict(meta)
    return [
        BatchItem(
            item_id=f"msg-{i}",
            # Through JSON, as the message on the queue carries it.
            task=__import__("json").loads(t.model_dump_json()),
            label_row_metadata=metadata.get(str(t.data_hash)),
            verify_in_stage=verify_in_stage,
        )
        for i, t in enumerate(tasks)
    ]


@pytest.fixture(name="make_batch_items")
def make_batch_items_fixture() -> object:
    """``make_batch_items`` as a fixture (tests/ is not a package, so it cannot be imported)."""
    return make_batch_items


@pytest.fixture
def fake_task() -> SimpleNamespace:
    """A stand-in for the per-task objects in pure dependency-graph tests (no SDK call is made)."""
    return SimpleNamespace(uuid=uuid4(), data_hash=uuid4(), data_title="x.jpg")


# A workflow holding the stage and pathway names the encord-agents documentation examples use, so
# that the examples run with their bodies unchanged.
SEED_EXAMPLES_FIXTURE: dict[str, Any] = {
    "title": "Seed examples",
    "ontology": {
        "objects": [{"name": "Car", "shape": "bounding_box"}, {"name": "Box", "shape": "polygon"}],
        "classifications": [{"name": "Quality", "options": ["good", "bad"]}],
    },
    "workflow": {
        "start": "my_stage_name",
        "stages": [
            {
                "title": "my_stage_name",
                "type": "AGENT",
                "pathways": [{"name": "next_stage", "to": "Complete"}],
            },
            {
                "title": "prelabel",
                "type": "AGENT",
                "pathways": [{"name": "review", "to": "validate"}],
            },
            {
                "title": "validate",
                "type": "AGENT",
                "pathways": [{"name": "complete", "to": "Complete"}],
            },
            {"title": "stage_1", "type": "AGENT", "pathways": [{"name": "next", "to": "stage_2"}]},
            {"title": "stage_2", "type": "AGENT", "pathways": [{"name": "next", "to": "Complete"}]},
            {
                "title": "my_stage",
                "type": "AGENT",
                "pathways": [{"name": "next_stage", "to": "Complete"}],
            },
            {
                "title": "your_stage_name",
                "type": "AGENT",
                "pathways": [{"name": "next_stage", "to": "Complete"}],
            },
            {
                "title": "Agent stage",
                "type": "AGENT",
                "pathways": [{"name": "labeled", "to": "Complete"}],
            },
            {
                "title": "Agent 1",
                "type": "AGENT",
                "pathways": [{"name": "complete", "to": "Complete"}],
            },
            {"title": "Complete", "type": "DONE"},
        ],
    },
    "media": [
        {
            "kind": "image",
            "count": 3,
            "stage": stage,
            "title": f"{stage}_{{index}}.jpg",
            "client_metadata": {"stage": stage, "index": "{index}"},
        }
        for stage in (
            "my_stage_name",
            "prelabel",
            "stage_1",
            "stage_2",
            "your_stage_name",
            "Agent stage",
            "Agent 1",
        )
    ]
    + [
        {
            "kind": "video",
            "count": 2,
            "stage": "my_stage",
            "fps": 10,
            "duration": 1.0,
            "width": 64,
            "height": 48,
            "title": "clip_{index}.mp4",
        }
    ],
    "twin": {"title": "Seed examples (twin)"},
}


@pytest.fixture
def seeds_project(emulator: Any) -> Any:
    """A fresh project whose workflow has the stages and pathways of the seed examples."""
    emulator.faults.clear()
    return emulator.seed(SEED_EXAMPLES_FIXTURE)
