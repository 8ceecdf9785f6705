"""The encord-agents documentation examples (seeds/), run against the emulator with only their
imports rewritten (``encord_agents.tasks`` -> ``agent_core``, ``encord_agents.tasks.dependencies``
-> ``agent_core.dependencies``, ``encord_agents.core.data_model`` -> ``agent_core.models``).

Placeholders (``"<your_project_hash>"``, ``"<my_stage_name>"``, ``twin_project_hash="..."``) are
filled in with the seeded project's values; lines marked ``# test:`` only record what the example
saw. The seeded workflow has the stage and pathway names the examples use (see conftest.py).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def counts(emulator: Any, seeded: Any) -> dict[str, int]:
    result: dict[str, int] = emulator.state.stage_counts(seeded.project_hash)
    return result


def test_runner_overview_basic_usage(emulator: Any, seeds_project: Any, encord_env: Any) -> None:
    from encord.objects.ontology_labels_impl import LabelRowV2

    from agent_core import Runner

    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage(stage="my_stage_name")  # or stage="<stage_uuid>"
    def process_task(lr: LabelRowV2) -> str | None:
        # Modify the label row as needed
        lr.set_priority(0.5)

        # Return the pathway name or UUID where the task should go next
        return "next_stage"

    # simple
    runner()
    # args (refresh_every is left out: it would poll forever)
    runner(
        project_hash=seeds_project.project_hash,
        num_retries=1,
        task_batch_size=1,
    )
    assert counts(emulator, seeds_project)["my_stage_name"] == 0
    for task_uuid in seeds_project.task_uuids["my_stage_name"]:
        task = emulator.state.task(task_uuid)
        assert emulator.state.task_stage(task_uuid).title == "Complete"
        assert emulator.state.priority(seeds_project.project_hash, task.data_hash) == 0.5


def test_multiple_stages_run_in_definition_order(
    emulator: Any, seeds_project: Any, encord_env: Any
) -> None:
    from encord.objects.ontology_labels_impl import LabelRowV2

    from agent_core import Runner

    runner = Runner()
    calls: list[str] = []  # test:

    @runner.stage("stage_1")
    def stage_1():  # type: ignore[no-untyped-def]
        calls.append("stage_1")  # test:
        return "next"

    @runner.stage("stage_2")
    def stage_2():  # type: ignore[no-untyped-def]
        calls.append("stage_2")  # test:
        return "next"

    @runner.stage("prelabel")
    def prelabel_task(lr: LabelRowV2) -> str:
        # Add initial labels
        return "review"

    @runner.stage("validate")
    def validate_task(lr: LabelRowV2) -> str:
        # Validate labels
        return "complete"

    runner(project_hash=seeds_project.project_hash)
    # stage_1's queue is emptied first; its tasks then reach stage_2, emptied next.
    assert calls == ["stage_1"] * 3 + ["stage_2"] * 6
    after = counts(emulator, seeds_project)
    assert after["stage_1"] == after["stage_2"] == after["prelabel"] == after["validate"] == 0
    assert after["Complete"] == 9


def test_optional_arguments_and_overwrite(
    emulator: Any, seeds_project: Any, encord_env: Any
) -> None:
    from encord.objects.ontology_labels_impl import LabelRowV2

    from agent_core import Runner
    from agent_core.models import LabelRowMetadataIncludeArgs

    runner = Runner(project_hash=seeds_project.project_hash)
    seen: list[Any] = []  # test:

    args = LabelRowMetadataIncludeArgs(
        include_client_metadata=True,
    )

    @runner.stage("your_stage_name", label_row_metadata_include_args=args)
    def my_agent(lr: LabelRowV2):  # type: ignore[no-untyped-def]
        lr.client_metadata  # will now be populated  # noqa: B018
        seen.append(lr.client_metadata)  # test:

    @runner.stage("your_stage_name", overwrite=True)
    def stage():  # type: ignore[no-untyped-def]
        seen.append("overwritten")  # test:

    @runner.stage("your_stage_name", label_row_metadata_include_args=args, overwrite=True)
    def my_agent_again(lr: LabelRowV2):  # type: ignore[no-untyped-def]
        lr.client_metadata  # will now be populated  # noqa: B018
        seen.append(lr.client_metadata)  # test:

    runner()
    assert len(seen) == 3
    assert all(m and m["stage"] == "your_stage_name" for m in seen)
    assert counts(emulator, seeds_project)["your_stage_name"] == 3  # None: tasks stay


def test_builtin_dependencies_twin_and_video_iterator(
    emulator: Any, seeds_project: Any, encord_env: Any
) -> None:
    from collections.abc import Iterator
    from typing import Annotated

    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.workflow.stages.agent import AgentTask

    from agent_core import Depends, Runner
    from agent_core.dependencies import (
        Twin,  # Access a "twin" project's labels
        dep_twin_label_row,  # Get label row from twin project
        dep_video_iterator,  # Iterate over video frames
    )
    from agent_core.models import Frame

    runner = Runner(project_hash=seeds_project.project_hash)
    seen: list[tuple[str, str, int]] = []  # test:

    @runner.stage("my_stage")
    def my_agent(
        task: AgentTask,
        lr: LabelRowV2,
        twin: Annotated[
            Twin, Depends(dep_twin_label_row(twin_project_hash=seeds_project.twin_project_hash))
        ],
        frames: Annotated[Iterator[Frame], Depends(dep_video_iterator)],
    ) -> str:
        # Use the dependencies
        seen.append((twin.label_row.data_hash, lr.data_hash, sum(1 for _ in frames)))  # test:
        pass

    runner()
    assert len(seen) == 2
    assert all(twin == own and n_frames == 10 for twin, own, n_frames in seen)


def test_annotations_and_storage_item_patterns(
    emulator: Any, seeds_project: Any, encord_env: Any
) -> None:
    from typing import Annotated

    from encord.objects import LabelRowV2
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.workflow.stages.agent import AgentTask

    from agent_core import Runner
    from agent_core.dependencies import (
        Depends,
        dep_storage_item,
    )

    seen: list[Any] = []  # test:
    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage("your_stage_name")
    def my_agent(project: Project):  # type: ignore[no-untyped-def]
        seen.append(project.project_hash)  # test:

    runner()
    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage("your_stage_name")
    def my_agent_2(task: AgentTask, label_row: LabelRowV2):  # type: ignore[no-untyped-def]
        seen.append(str(label_row.data_hash) == str(task.data_hash))  # test:

    runner()
    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage("your_stage_name")
    def my_agent_3(  # type: ignore[no-untyped-def]
        storage_item_1: Annotated[StorageItem, Depends(dep_storage_item)],
        storage_item_2: StorageItem = Depends(dep_storage_item),
    ):
        seen.append(storage_item_1 is storage_item_2)  # test:

    runner()
    assert seen == [seeds_project.project_hash] * 3 + [True] * 6


def test_custom_nested_dependency(emulator: Any, seeds_project: Any, encord_env: Any) -> None:
    from typing import Annotated

    from encord.objects import LabelRowV2
    from encord.storage import StorageItem

    from agent_core import Depends, Runner
    from agent_core.dependencies import dep_storage_item

    runner = Runner(project_hash=seeds_project.project_hash)
    seen: list[dict[str, Any]] = []  # test:

    def my_custom_dependency(
        lr: LabelRowV2, storage_item: StorageItem = Depends(dep_storage_item)
    ) -> dict:  # type: ignore[type-arg]
        """Custom dependencies can use LabelRowV2 and other dependencies"""
        return {"data_title": lr.data_title, "metadata": storage_item.client_metadata}

    @runner.stage("my_stage_name")
    def my_agent(metadata: Annotated[dict, Depends(my_custom_dependency)]) -> str:  # type: ignore[type-arg]
        # metadata is automatically injected
        seen.append(metadata)  # test:
        return "next_stage"

    runner()
    assert sorted(m["data_title"] for m in seen) == [f"my_stage_name_{i}.jpg" for i in range(3)]
    assert all(m["metadata"]["stage"] == "my_stage_name" for m in seen)
    assert counts(emulator, seeds_project)["Complete"] == 3


def test_reference_example_with_custom_value_and_video_frames(
    emulator: Any, seeds_project: Any, encord_env: Any
) -> None:
    from collections.abc import Iterator
    from typing import Annotated

    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.project import Project
    from encord.workflow.stages.agent import AgentTask

    from agent_core import Depends, Runner
    from agent_core.dependencies import dep_video_iterator
    from agent_core.models import Frame

    runner = Runner()
    shapes: list[tuple[int, ...]] = []  # test:

    def random_value() -> float:
        import random

        return random.random()

    @runner.stage("my_stage")
    def my_func(
        project: Project,
        lr: LabelRowV2,
        task: AgentTask,
        video_frames: Annotated[Iterator[Frame], Depends(dep_video_iterator)],
        custom: Annotated[float, Depends(random_value)],
    ) -> str | None:
        shapes.extend(frame.content.shape for frame in video_frames)  # test:
        return "next_stage"  # "<pathway_name or pathway_uuid>"

    runner(project_hash=seeds_project.project_hash)
    assert len(shapes) == 20 and set(shapes) == {(48, 64, 3)}
    assert counts(emulator, seeds_project)["my_stage"] == 0


def test_dependency_docstring_examples(emulator: Any, seeds_project: Any, encord_env: Any) -> None:
    from pathlib import Path
    from typing import Annotated

    import numpy as np
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.storage import StorageItem
    from encord.user_client import EncordUserClient
    from numpy.typing import NDArray

    from agent_core import Depends, FrameData, Runner  # noqa: F401 - imported by the example
    from agent_core.dependencies import dep_asset, dep_client, dep_single_frame, dep_storage_item

    runner = Runner(project_hash=seeds_project.project_hash)
    seen: list[Any] = []  # test:

    @runner.stage("Agent 1")
    def my_agent(
        asset: Annotated[Path, Depends(dep_asset)],
    ) -> str | None:
        asset.stat()  # read file stats
        seen.append((asset.name, asset.stat().st_size, asset.exists()))  # test:
        ...

    runner()
    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage("Agent 1")
    def my_agent_2(
        lr: LabelRowV2,  # <- Automatically injected
        frame: Annotated[NDArray[np.uint8], Depends(dep_single_frame)],
    ) -> str:
        assert frame.ndim == 3, "Will work"
        seen.append(frame.shape)  # test:

    runner()
    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage(stage="Agent 1")
    def my_agent_3(storage_item: Annotated[StorageItem, Depends(dep_storage_item)]) -> str:
        print(storage_item.name)
        print(storage_item.client_metadata)
        seen.append(storage_item.name)  # test:

    runner()
    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage("Agent 1")
    def my_agent_4(client: Annotated[EncordUserClient, Depends(dep_client)]) -> str:
        # Client will authenticated and ready to use.
        seen.append(type(client).__name__)  # test: (the example's get_dataset("") is a placeholder)

    runner()
    assets = seen[:3]
    data_hashes = [emulator.state.task(t).data_hash for t in seeds_project.task_uuids["Agent 1"]]
    # Named as encord-agents names them: <storage item uuid>.jpeg for a JPEG.
    item_uuids = [seeds_project.storage_item_uuids[h] for h in data_hashes]
    assert sorted(a[0] for a in assets) == sorted(f"{u}.jpeg" for u in item_uuids)
    assert all(size > 0 and exists for _, size, exists in assets)
    assert seen[3:6] == [(240, 320, 3)] * 3
    assert sorted(seen[6:9]) == [f"Agent 1_{i}.jpg" for i in range(3)]
    assert seen[9:] == ["EncordUserClient"] * 3


def test_deprecated_data_lookup_example(emulator: Any, seeds_project: Any, encord_env: Any) -> None:
    from typing import Annotated

    from encord.storage import StorageItem
    from encord.workflow.stages.agent import AgentTask

    from agent_core import Depends, Runner
    from agent_core.dependencies import DataLookup, dep_data_lookup

    runner = Runner(project_hash=seeds_project.project_hash)

    with pytest.warns(DeprecationWarning, match="dep_storage_item"):

        @runner.stage(stage="Agent 1")
        def my_agent(
            task: AgentTask, lookup: Annotated[DataLookup, Depends(dep_data_lookup)]
        ) -> str:
            # (data_row = lookup.get_data_row(...) needs dataset endpoints the emulator lacks)
            # Storage item from Encord Index
            storage_item: StorageItem = lookup.get_storage_item(task.data_hash)

            # Current metadata
            client_metadata = storage_item.client_metadata

            # Update metadata
            storage_item.update(
                client_metadata={"new": "entry", **(client_metadata or {})}
            )  # metadata. Make sure not to update in place!
            ...

    runner()
    for task_uuid in seeds_project.task_uuids["Agent 1"]:
        metadata = emulator.state.client_metadata(emulator.state.task(task_uuid).data_hash)
        assert metadata["new"] == "entry" and metadata["stage"] == "Agent 1"


def test_return_struct_example(emulator: Any, seeds_project: Any, encord_env: Any) -> None:
    from encord.objects.ontology_labels_impl import LabelRowV2

    from agent_core import Runner, TaskAgentReturnStruct

    runner = Runner(project_hash=seeds_project.project_hash)

    @runner.stage("Agent 1")
    def my_agent(lr: LabelRowV2) -> TaskAgentReturnStruct:
        return TaskAgentReturnStruct(pathway="complete", label_row=lr, label_row_priority=0.8)

    runner()
    for task_uuid in seeds_project.task_uuids["Agent 1"]:
        data_hash = emulator.state.task(task_uuid).data_hash
        assert emulator.state.priority(seeds_project.project_hash, data_hash) == 0.8
        assert emulator.state.label_row(seeds_project.project_hash, data_hash) is not None
        assert emulator.state.task_stage(task_uuid).title == "Complete"


def test_queue_runner_stages_example(emulator: Any, seeds_project: Any, encord_env: Any) -> None:
    from agent_core import QueueRunner, TaskCompletionResult

    runner = QueueRunner(project_hash=seeds_project.project_hash)

    @runner.stage("stage_1")
    def stage_1():  # type: ignore[no-untyped-def]
        return "next"

    @runner.stage("stage_2")
    def stage_2():  # type: ignore[no-untyped-def]
        return "next"

    # Populate the queue
    my_queue = []
    for stage in runner.get_agent_stages():
        for task in stage.get_tasks():
            my_queue.append((stage.title, task.model_dump_json()))
    # Execute on the queue
    results = []
    while my_queue:
        title, task_spec = my_queue.pop()
        wrapped = stage_1 if title == "stage_1" else stage_2
        result_json = wrapped(task_spec)
        results.append(TaskCompletionResult.model_validate_json(result_json))
    assert len(results) == 6 and all(r.success for r in results)
    assert counts(emulator, seeds_project)["stage_2"] == 3  # stage_1's tasks arrived there


AGENT_SCRIPT = """
from encord.workflow.stages.agent import AgentTask

from agent_core import Runner


def pre_execution_callback(runner: Runner) -> None:
    assert runner.project
    project = runner.project
    # Throws if child not found
    project.ontology_structure.get_child_by_title("Car")
    assert runner.agents

runner = Runner(pre_execution_callback=pre_execution_callback)
# Won't yet validate

# Define the agent
@runner.stage("Agent stage")
def agent_stage(task: AgentTask) -> str:
    ...
    return "labeled"

if __name__ == "__main__":
    runner.run()
"""


def test_pre_execution_callback_example_from_the_command_line(
    emulator: Any, seeds_project: Any, encord_env: Any, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    for flag in (
        "--project-hash",
        "--refresh-every",
        "--num-retries",
        "--task-batch-size",
        "--max-tasks-per-stage",
    ):
        assert flag in helped.stdout
    done = run(
        f"--project-hash={seeds_project.project_hash}",
        "--task-batch-size",
        "1",
        "--num-retries",
        "3",
        "--max-tasks-per-stage",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert counts(emulator, seeds_project)["Agent stage"] == 1  # 3 tasks, at most 2 per run
