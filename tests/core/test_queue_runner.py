"""QueueRunner and its batch API against the Encord emulator (real SDK, real HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import pytest
from encord.objects.ontology_labels_impl import LabelRowV2
from encord.storage import StorageItem
from encord.workflow.stages.agent import AgentTask

from agent_core import Depends, QueueRunner, TaskAgentReturnStruct, TaskCompletionResult
from agent_core.dependencies import dep_storage_item
from agent_core.exceptions import StageNotFoundError
from agent_core.models import BatchItem

if TYPE_CHECKING:
    from collections.abc import Callable

    from encord.user_client import EncordUserClient

    from infra.emulator import Emulator, SeededFixture

STAGE = "Agent 1"


def runner_for(seeded: SeededFixture, client: EncordUserClient) -> QueueRunner:
    return QueueRunner(project_hash=seeded.project_hash, client=client)


def stage_count(emulator: Emulator, seeded: SeededFixture, title: str) -> int:
    return emulator.state.stage_counts(seeded.project_hash)[title]


def test_batch_of_ten_with_label_rows_takes_at_most_four_requests(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    seen: list[str] = []

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2) -> str:
        assert lr.is_labelling_initialised
        seen.append(lr.data_title)
        return "complete"

    items = make_batch_items(runner, STAGE, 10)
    emulator.counters.reset()
    outcomes = runner.run_batch(STAGE, items)

    requests = emulator.counters.snapshot()
    assert emulator.counters.encord_total() <= 4, requests
    assert [o.item_id for o in outcomes] == [i.item_id for i in items]
    assert {o.status for o in outcomes} == {"succeeded"}
    assert {o.pathway_name for o in outcomes} == {"complete"}
    assert {o.pathway_uuid for o in outcomes} == {basic_project.pathway_uuids[STAGE]["complete"]}
    assert len(seen) == 10
    assert stage_count(emulator, basic_project, "Complete") == 10
    # The pathway actions of the ten tasks went out as one request.
    assert sum(n for k, n in requests.items() if k.endswith("/actions")) == 1


def test_batch_with_carried_metadata_takes_two_requests(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2, task: AgentTask) -> str:
        assert str(lr.data_hash) == str(task.data_hash)
        return "complete"

    items = make_batch_items(runner, STAGE, 10, with_metadata=True, verify_in_stage=False)
    assert all(i.label_row_metadata for i in items)
    emulator.counters.reset()
    outcomes = runner.run_batch(STAGE, items)

    assert {o.status for o in outcomes} == {"succeeded"}
    # One label-row initialise bundle, one action bundle; the project is cached in the runner.
    assert emulator.counters.encord_total() == 2, emulator.counters.snapshot()


def test_nothing_is_fetched_that_no_function_needs(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "complete"

    items = make_batch_items(runner, STAGE, 5, verify_in_stage=False)
    emulator.counters.reset()
    assert {o.status for o in runner.run_batch(STAGE, items)} == {"succeeded"}
    assert list(emulator.counters.snapshot()) == [
        "POST /v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/actions"
    ]


def test_one_failing_task_does_not_fail_its_neighbours(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    events: list[tuple[str, str]] = []
    items = make_batch_items(runner, STAGE, 10)
    bad_uuid = items[4].task["uuid"]

    def tracked(task: AgentTask) -> Iterator[str]:
        events.append(("open", str(task.uuid)))
        try:
            yield str(task.uuid)
        finally:
            events.append(("close", str(task.uuid)))

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2, handle: Annotated[str, Depends(tracked)]) -> str:
        if handle == bad_uuid:
            raise RuntimeError(f"model crashed on {lr.data_title}")
        return "complete"

    outcomes = runner.run_batch(STAGE, items)

    failed = outcomes[4]
    assert failed.status == "failed" and failed.retryable
    assert failed.error_type == "RuntimeError" and "model crashed" in (failed.error or "")
    assert failed.traceback is not None and "raise RuntimeError" in failed.traceback
    assert [o.status for i, o in enumerate(outcomes) if i != 4] == ["succeeded"] * 9
    assert stage_count(emulator, basic_project, "Complete") == 9
    assert emulator.state.task_stage(bad_uuid).title == STAGE
    # Every generator dependency was closed, the failing task's included.
    assert events.count(("close", bad_uuid)) == 1
    assert sorted(e for e in events if e[0] == "open") == sorted(
        ("open", i.task["uuid"]) for i in items
    )
    assert len([e for e in events if e[0] == "close"]) == 10


def test_an_agent_calling_sys_exit_fails_only_its_own_task(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    items = make_batch_items(runner, STAGE, 3)
    bad_uuid = items[1].task["uuid"]

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        if str(task.uuid) == bad_uuid:
            raise SystemExit(3)
        return "complete"

    outcomes = runner.run_batch(STAGE, items)

    assert [o.status for o in outcomes] == ["succeeded", "failed", "succeeded"]
    assert outcomes[1].error_type == "SystemExit" and outcomes[1].retryable
    assert stage_count(emulator, basic_project, "Complete") == 2


def test_task_that_left_the_stage_is_skipped_and_not_run(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    ran: list[str] = []

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        ran.append(str(task.uuid))
        return "complete"

    items = make_batch_items(runner, STAGE, 4)
    gone = items[1].task["uuid"]
    emulator.state.move_tasks(
        basic_project.project_hash,
        basic_project.stage_uuids[STAGE],
        basic_project.stage_uuids["Complete"],
        [gone],
        "someone@example.com",
    )
    outcomes = runner.run_batch(STAGE, items)
    assert [o.status for o in outcomes] == ["succeeded", "skipped", "succeeded", "succeeded"]
    assert gone not in ran and "no longer in stage" in (outcomes[1].error or "")


def test_task_moved_while_the_batch_ran_is_skipped_at_commit(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    items = make_batch_items(runner, STAGE, 5)
    moved = items[3].task["uuid"]

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        if str(task.uuid) == items[0].task["uuid"]:
            # Someone else moves a later task of the batch while this one runs.
            emulator.state.move_tasks(
                basic_project.project_hash,
                basic_project.stage_uuids[STAGE],
                basic_project.stage_uuids["Complete"],
                [moved],
                "someone@example.com",
            )
        return "complete"

    outcomes = runner.run_batch(STAGE, items)
    assert [o.status for o in outcomes] == ["succeeded"] * 3 + ["skipped", "succeeded"]
    assert "left stage" in (outcomes[3].error or "")
    assert emulator.state.pathway_actions(moved) == []
    for index in (0, 1, 2, 4):
        assert len(emulator.state.pathway_actions(items[index].task["uuid"])) == 1


def test_should_continue_defers_the_rest(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    ran: list[str] = []

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        ran.append(str(task.uuid))
        return "complete"

    items = make_batch_items(runner, STAGE, 10)
    outcomes = runner.run_batch(STAGE, items, should_continue=lambda: len(ran) < 3)
    assert [o.status for o in outcomes] == ["succeeded"] * 3 + ["deferred"] * 7
    assert stage_count(emulator, basic_project, "Complete") == 3
    assert all(o.task_uuid not in ran for o in outcomes[3:])


def test_unknown_pathway_fails_without_retry_and_names_the_valid_ones(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "finished"

    outcomes = runner.run_batch(STAGE, make_batch_items(runner, STAGE, 2))
    assert {o.status for o in outcomes} == {"failed"}
    assert not any(o.retryable for o in outcomes)
    assert outcomes[0].error_type == "PathwayNotFoundError"
    assert '"complete"' in (outcomes[0].error or "") and "'finished'" in (outcomes[0].error or "")
    assert stage_count(emulator, basic_project, STAGE) == 20


def test_encord_error_while_fetching_fails_the_batch_as_retryable(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    from infra.emulator import FaultRule

    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2) -> str:
        return "complete"

    items = make_batch_items(runner, STAGE, 3)
    emulator.faults.add(FaultRule(endpoint="RPC labelrowmetadata*", rate=1.0, status=500))
    outcomes = runner.run_batch(STAGE, items)
    emulator.faults.clear()
    assert {o.status for o in outcomes} == {"failed"}
    assert all(o.retryable for o in outcomes)
    assert "Encord error while fetching" in (outcomes[0].error or "")


def test_invalid_spec_fails_only_its_item(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "complete"

    items = make_batch_items(runner, STAGE, 2)
    items.insert(1, BatchItem(item_id="bad", task={"uuid": "not-a-uuid"}))
    outcomes = runner.run_batch(STAGE, items)
    assert [o.status for o in outcomes] == ["succeeded", "failed", "succeeded"]
    assert outcomes[1].error_type == "InvalidTaskSpec" and not outcomes[1].retryable


def test_return_struct_saves_labels_and_sets_priority_before_moving(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2) -> TaskAgentReturnStruct:
        classification = lr.ontology_structure.classifications[0]
        attribute = classification.attributes[0]
        instance = classification.create_instance()
        instance.set_answer(attribute.options[0], attribute=attribute)
        instance.set_for_frames(0)
        lr.add_classification_instance(instance)
        return TaskAgentReturnStruct(pathway="complete", label_row=lr, label_row_priority=0.9)

    items = make_batch_items(runner, STAGE, 3)
    emulator.counters.reset()
    outcomes = runner.run_batch(STAGE, items)
    assert {o.status for o in outcomes} == {"succeeded"}, outcomes
    requests = emulator.counters.snapshot()
    assert requests.get("RPC labelrow.POST") == 1
    assert sum(n for k, n in requests.items() if k.endswith("/priorities")) == 1
    for item in items:
        data_hash = item.task["data_hash"]
        assert emulator.state.priority(basic_project.project_hash, data_hash) == pytest.approx(0.9)
        row = emulator.state.label_row(basic_project.project_hash, data_hash)
        assert row is not None and row.classification_answers


def test_will_set_priority_loads_the_label_row_for_the_priority(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE, will_set_priority=True)
    def agent(task: AgentTask) -> TaskAgentReturnStruct:
        return TaskAgentReturnStruct(label_row_priority=0.25)

    [config] = runner.stage_configs()
    assert config.needs_label_row and not config.needs_storage_item
    items = make_batch_items(runner, STAGE, 2)
    outcomes = runner.run_batch(STAGE, items)
    assert {(o.status, o.pathway_name) for o in outcomes} == {("succeeded", None)}
    for item in items:
        priority = emulator.state.priority(basic_project.project_hash, item.task["data_hash"])
        assert priority == pytest.approx(0.25)
    assert stage_count(emulator, basic_project, STAGE) == 20


def test_storage_items_are_fetched_in_one_request(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)
    metadata: list[object] = []

    @runner.stage(STAGE)
    def agent(item: Annotated[StorageItem, Depends(dep_storage_item)]) -> None:
        metadata.append(item.client_metadata)

    [config] = runner.stage_configs()
    assert config.needs_storage_item and not config.needs_label_row
    assert config.pathways == {"complete": config.pathways["complete"]}
    items = make_batch_items(runner, STAGE, 6, with_metadata=True, verify_in_stage=False)
    emulator.counters.reset()
    outcomes = runner.run_batch(STAGE, items)
    assert {o.status for o in outcomes} == {"succeeded"}
    assert list(emulator.counters.snapshot()) == ["POST /v2/public/storage/items/get-bulk"]
    assert all(isinstance(m, dict) and m.get("source") == "basic" for m in metadata)


def test_wrapper_returns_task_completion_result_json(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def my_agent(lr: LabelRowV2) -> str:
        return "complete"

    [stage] = list(runner.get_agent_stages())
    tasks = list(stage.get_tasks())[:3]
    result = TaskCompletionResult.model_validate_json(my_agent(tasks[0].model_dump_json()))
    assert result.success and result.task_uuid == tasks[0].uuid
    assert result.stage_uuid == stage.uuid
    assert str(result.pathway) == basic_project.pathway_uuids[STAGE]["complete"]
    # Again: the task has left the stage, so nothing is done (encord-agents: no error text).
    again = TaskCompletionResult.model_validate_json(my_agent(tasks[0].model_dump_json()))
    assert again.success is False and again.pathway is None
    # A list of specs gives one result whose fields are lists (encord-agents' shape).
    many = TaskCompletionResult.model_validate_json(
        my_agent([t.model_dump_json() for t in tasks[1:]])
    )
    assert many.task_uuid == [t.uuid for t in tasks[1:]]
    assert many.success == [t.uuid for t in tasks[1:]]
    assert my_agent.__wrapped__ is not None and my_agent.__name__ == "my_agent"


def test_unknown_stage_lists_the_agent_stages(
    basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = runner_for(basic_project, encord_client)
    with pytest.raises(StageNotFoundError) as info:

        @runner.stage("Agent One")
        def agent() -> None: ...

    message = str(info.value)
    assert '"Agent 1"' in message and basic_project.stage_uuids[STAGE] in message
    assert '@runner.stage(stage="Agent 1")' in message
    with pytest.raises(StageNotFoundError, match="No function is registered"):
        runner.run_batch(STAGE, [])


def test_concurrent_batches_share_the_cached_project(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2) -> str:
        return "complete"

    items = make_batch_items(runner, STAGE, 12, with_metadata=True, verify_in_stage=False)
    emulator.counters.reset()
    results: dict[int, list[str]] = {}

    def run(index: int) -> None:
        chunk = items[index * 6 : (index + 1) * 6]
        results[index] = [o.status for o in runner.run_batch(STAGE, chunk)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == {0: ["succeeded"] * 6, 1: ["succeeded"] * 6}
    assert not any(
        k.split(" ")[-1] == "projects/{project_hash}" for k in emulator.counters.snapshot()
    )


def test_failed_save_keeps_the_task_in_the_stage(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    from infra.emulator import FaultRule

    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2, task: AgentTask) -> TaskAgentReturnStruct | str:
        if task.data_title.endswith(("0.jpg", "1.jpg")):
            return TaskAgentReturnStruct(pathway="complete", label_row=lr)
        return "complete"

    items = make_batch_items(runner, STAGE, 20)
    emulator.faults.add(FaultRule(endpoint="RPC labelrow.POST", rate=1.0, status=500))
    outcomes = runner.run_batch(STAGE, items)
    emulator.faults.clear()
    saving = [o for o in outcomes if o.status == "failed"]
    assert len(saving) == 4 and all(o.retryable for o in saving)
    assert all("saving label rows" in (o.error or "") for o in saving)
    # Labels could not be saved, so those tasks did not move on; the others did.
    assert stage_count(emulator, basic_project, STAGE) == 4
    assert {o.status for o in outcomes if o not in saving} == {"succeeded"}


def test_rejected_action_bundle_with_every_task_still_there_fails_retryable(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    from infra.emulator import FaultRule

    runner = runner_for(basic_project, encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "complete"

    items = make_batch_items(runner, STAGE, 3, verify_in_stage=False)
    emulator.faults.add(FaultRule(endpoint="*/actions", rate=1.0, status=500))
    outcomes = runner.run_batch(STAGE, items)
    emulator.faults.clear()
    assert {(o.status, o.retryable) for o in outcomes} == {("failed", True)}
    assert "moving tasks along their pathways" in (outcomes[0].error or "")
    assert stage_count(emulator, basic_project, STAGE) == 20


def test_twin_label_row_with_its_task(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    make_batch_items: Callable[..., list[BatchItem]],
) -> None:
    from agent_core.dependencies import Twin, dep_twin_label_row

    runner = runner_for(basic_project, encord_client)
    twins: list[tuple[AgentTask, Twin]] = []

    @runner.stage(STAGE)
    def agent(
        task: AgentTask,
        twin: Annotated[
            Twin,
            Depends(dep_twin_label_row(basic_project.twin_project_hash or "", include_task=True)),
        ],
    ) -> None:
        twins.append((task, twin))

    outcomes = runner.run_batch(STAGE, make_batch_items(runner, STAGE, 2))
    assert {o.status for o in outcomes} == {"succeeded"}, outcomes
    for task, twin in twins:
        assert twin.label_row.data_hash == str(task.data_hash)
        assert twin.label_row.is_labelling_initialised
        assert twin.task is not None and twin.task.uuid != task.uuid
        assert str(twin.task.data_hash) == str(task.data_hash)
