"""Workflow behaviour through the real SDK: stages, task listing, proceed, move, bundles."""

from __future__ import annotations

import uuid

import pytest
from encord.exceptions import InvalidArgumentsError
from encord.project import Project
from encord.user_client import EncordUserClient
from encord.workflow import AgentStage, AnnotationStage, FinalStage, ReviewStage
from encord.workflow.stages.agent import AgentTaskStatus
from encord.workflow.stages.annotation import _ActionSubmit

from infra.emulator import Emulator, SeededFixture

TASKS_ROUTE = "GET /v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/tasks"
ACTIONS_ROUTE = "POST /v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/actions"

SMALL_DEMO = {
    "title": "review flow",
    "workflow": {
        "start": "pre-label",
        "stages": [
            {
                "title": "pre-label",
                "type": "AGENT",
                "pathways": [
                    {"name": "annotate", "to": "Annotate"},
                    {"name": "skip", "to": "Complete"},
                ],
            },
            {"title": "Annotate", "type": "ANNOTATION", "to": "Review"},
            {"title": "Review", "type": "REVIEW", "approve": "Complete", "reject": "Annotate"},
            {"title": "Complete", "type": "DONE"},
        ],
    },
    "media": [{"kind": "image", "count": 4, "title": "img_{index}.png", "mime": "image/png"}],
}


def _project(client: EncordUserClient, seeded: SeededFixture) -> Project:
    return client.get_project(seeded.project_hash)


def test_project_and_stages(encord_client: EncordUserClient, basic_project: SeededFixture) -> None:
    project = _project(encord_client, basic_project)
    stages = {s.title: s for s in project.workflow.stages}
    assert set(stages) == {"Agent 1", "Complete"}
    agent = stages["Agent 1"]
    assert isinstance(agent, AgentStage)
    assert isinstance(stages["Complete"], FinalStage)
    assert [(p.name, str(p.uuid), str(p.destination_uuid)) for p in agent.pathways] == [
        (
            "complete",
            basic_project.pathway_uuids["Agent 1"]["complete"],
            basic_project.stage_uuids["Complete"],
        )
    ]
    assert project.ontology_structure.get_child_by_title("Box").title == "Box"


def test_proceed_moves_task_to_destination(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = _project(encord_client, basic_project)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    final = project.workflow.get_stage(name="Complete", type_=FinalStage)
    tasks = list(agent.get_tasks())
    assert len(tasks) == 20 and not list(final.get_tasks())

    tasks[0].proceed(pathway_name="complete")
    tasks[1].proceed(pathway_uuid=basic_project.pathway_uuids["Agent 1"]["complete"])

    assert len(list(agent.get_tasks())) == 18
    done = list(final.get_tasks())
    assert {t.uuid for t in done} == {tasks[0].uuid, tasks[1].uuid}
    state = emulator.state
    assert [t.uuid for t in state.tasks_in_stage(basic_project.project_hash, "Complete")] == [
        str(t.uuid) for t in done
    ]
    assert state.task_stage(str(tasks[0].uuid)).title == "Complete"
    history = state.pathway_actions(str(tasks[0].uuid))
    assert len(history) == 1
    assert (history[0].from_stage_title, history[0].pathway_name, history[0].to_stage_title) == (
        "Agent 1",
        "complete",
        "Complete",
    )
    assert [e.action for e in state.task_history(str(tasks[2].uuid))] == ["CREATED"]


def test_bundled_proceed_is_one_request(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = _project(encord_client, basic_project)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    tasks = list(agent.get_tasks())
    emulator.counters.reset()
    with project.create_bundle() as bundle:
        for task in tasks[:15]:
            task.proceed(pathway_name="complete", bundle=bundle)
    assert emulator.counters.get(ACTIONS_ROUTE) == 1
    assert emulator.state.stage_counts(basic_project.project_hash) == {"Agent 1": 5, "Complete": 15}


def test_bundle_with_unknown_pathway_applies_nothing(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = _project(encord_client, basic_project)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    tasks = list(agent.get_tasks())
    with (
        pytest.raises(InvalidArgumentsError, match="no pathway named 'nope'") as info,
        project.create_bundle() as bundle,
    ):
        tasks[0].proceed(pathway_name="complete", bundle=bundle)
        tasks[1].proceed(pathway_name="nope", bundle=bundle)
    assert str(tasks[1].uuid) in str(info.value)
    assert emulator.state.stage_counts(basic_project.project_hash) == {"Agent 1": 20, "Complete": 0}

    bogus = str(uuid.uuid4())
    with pytest.raises(InvalidArgumentsError, match=bogus):
        tasks[0].proceed(pathway_uuid=bogus)


def test_proceed_of_task_no_longer_in_stage_is_refused(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = _project(encord_client, basic_project)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    task = next(iter(agent.get_tasks()))
    task.proceed(pathway_name="complete")
    with pytest.raises(InvalidArgumentsError, match=f"Task {task.uuid} is not in stage 'Agent 1'"):
        task.proceed(pathway_name="complete")
    assert len(emulator.state.pathway_actions(str(task.uuid))) == 1


def test_move_tasks(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = _project(encord_client, basic_project)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    final = project.workflow.get_stage(name="Complete", type_=FinalStage)
    tasks = list(agent.get_tasks())
    with project.create_bundle() as bundle:
        for task in tasks[:3]:
            task.move(destination_stage_uuid=final.uuid, bundle=bundle)
    assert len(list(final.get_tasks())) == 3
    back = next(iter(final.get_tasks()))
    back.move(destination_stage_uuid=agent.uuid)
    assert emulator.state.stage_counts(basic_project.project_hash) == {"Agent 1": 18, "Complete": 2}
    events = emulator.state.task_history(str(back.uuid))
    assert [(e.action, e.to_stage_title) for e in events[1:]] == [
        ("MOVE", "Complete"),
        ("MOVE", "Agent 1"),
    ]


def test_task_filters(encord_client: EncordUserClient, basic_project: SeededFixture) -> None:
    project = _project(encord_client, basic_project)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    wanted = basic_project.data_hashes[3:6]
    assert {str(t.data_hash) for t in agent.get_tasks(data_hash=wanted)} == set(wanted)
    titles = [t.data_title for t in agent.get_tasks(data_title="image_001")]
    assert sorted(titles) == [f"image_{i:04d}.jpg" for i in range(10, 20)]
    assert len(list(agent.get_tasks(status=AgentTaskStatus.NEW))) == 20
    assert list(agent.get_tasks(status=[AgentTaskStatus.ASSIGNED])) == []
    assert len(list(agent.get_tasks(dataset_hash=basic_project.dataset_hash))) == 20
    assert list(agent.get_tasks(dataset_hash=str(uuid.uuid4()))) == []
    assert list(agent.get_tasks(assignee="someone@example.com")) == []


def test_paging_over_more_tasks_than_a_page(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    seeded = emulator.seed(
        {
            "workflow": {
                "start": "Agent 1",
                "stages": [
                    {
                        "title": "Agent 1",
                        "type": "AGENT",
                        "pathways": [{"name": "done", "to": "Done"}],
                    },
                    {"title": "Done", "type": "DONE"},
                ],
            },
            "media": [{"kind": "image", "count": 230, "width": 16, "height": 16}],
        }
    )
    project = encord_client.get_project(seeded.project_hash)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    emulator.counters.reset()
    tasks = list(agent.get_tasks())
    assert len(tasks) == 230 and len({t.uuid for t in tasks}) == 230
    assert emulator.counters.get(TASKS_ROUTE) == 3  # pages of 100, 100, 30

    # Tasks leaving the stage while a listing is under way do not make later pages skip any.
    emulator.counters.reset()
    seen = []
    for index, task in enumerate(agent.get_tasks()):
        seen.append(task.uuid)
        if index % 2 == 0:
            task.proceed(pathway_name="done")
    assert len(seen) == 230 and len(set(seen)) == 230


def test_priority_orders_task_listing(
    emulator: Emulator, encord_client: EncordUserClient, basic_project: SeededFixture
) -> None:
    project = _project(encord_client, basic_project)
    rows = project.list_label_rows_v2(data_hashes=basic_project.data_hashes[-2:])
    with project.create_bundle() as bundle:
        rows[0].set_priority(0.9, bundle=bundle)
        rows[1].set_priority(0.8, bundle=bundle)
    agent = project.workflow.get_stage(name="Agent 1", type_=AgentStage)
    first_two = [str(t.data_hash) for t in list(agent.get_tasks())[:2]]
    assert first_two == [rows[0].data_hash, rows[1].data_hash]
    assert emulator.state.priority(basic_project.project_hash, rows[0].data_hash) == 0.9


def test_annotation_and_review_actions(emulator: Emulator, encord_client: EncordUserClient) -> None:
    seeded = emulator.seed(SMALL_DEMO)
    project = encord_client.get_project(seeded.project_hash)
    agent = project.workflow.get_stage(name="pre-label", type_=AgentStage)
    annotate = project.workflow.get_stage(name="Annotate", type_=AnnotationStage)
    review = project.workflow.get_stage(name="Review", type_=ReviewStage)
    with project.create_bundle() as bundle:
        for task in agent.get_tasks():
            task.proceed(pathway_name="annotate", bundle=bundle)
    annotation_tasks = list(annotate.get_tasks())
    assert len(annotation_tasks) == 4
    annotation_tasks[0].assign("annotator@example.com")
    assert [t.assignee for t in annotate.get_tasks(assignee="annotator@example.com")] == [
        "annotator@example.com"
    ]
    for annotation_task in annotate.get_tasks():
        annotation_task.submit()
    reviews = list(review.get_tasks())
    assert len(reviews) == 4
    reviews[0].approve()
    reviews[1].reject()
    assert emulator.state.stage_counts(seeded.project_hash) == {
        "pre-label": 0,
        "Annotate": 1,
        "Review": 2,
        "Complete": 1,
    }
    # The SDK has no submit() on review tasks; send the annotation action to the review stage.
    with pytest.raises(InvalidArgumentsError, match="SUBMIT is not possible"):
        review._workflow_client.action(review.uuid, _ActionSubmit(task_uuid=reviews[2].uuid))


def test_workflow_complete_and_reopen(emulator: Emulator, encord_client: EncordUserClient) -> None:
    seeded = emulator.seed(SMALL_DEMO)
    project = encord_client.get_project(seeded.project_hash)
    rows = project.list_label_rows_v2()
    with project.create_bundle() as bundle:
        for row in rows[:2]:
            row.initialise_labels(bundle=bundle)
    rows[0].workflow_complete()
    rows[1].workflow_reopen()
    assert emulator.state.task_stage(seeded.task_by_data[rows[0].data_hash]).title == "Complete"
    assert emulator.state.task_stage(seeded.task_by_data[rows[1].data_hash]).title == "pre-label"
    refreshed = {r.data_hash: r for r in project.list_label_rows_v2()}
    node = refreshed[rows[0].data_hash].workflow_graph_node
    assert node is not None and node.title == "Complete"
