"""Issue 10: code written for encord-agents 0.2.10 gets encord-agents' results here.

One test per silent difference the issue lists (the sampler's is in test_vision.py, and the
``Frame.b64_encoding`` default too), the signatures, and the import paths after the one-line
rewrite ``encord_agents`` -> ``agent_core``.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Annotated
from uuid import UUID

import pytest
from encord.objects.ontology_labels_impl import LabelRowV2
from encord.user_client import EncordUserClient
from encord.workflow.stages.agent import AgentStage, AgentTask
from pydantic import BaseModel, ConfigDict

from agent_core import Depends, QueueRunner, Runner, TaskAgentReturnStruct
from agent_core.exceptions import PrintableError

if TYPE_CHECKING:
    from infra.emulator import Emulator, SeededFixture

STAGE = "Agent 1"


class PeerTaskCompletionResult(BaseModel):
    """encord-agents 0.2.10's ``TaskCompletionResult`` field types, restated (nothing extra)."""

    model_config = ConfigDict(extra="forbid")

    task_uuid: UUID | list[UUID]
    stage_uuid: UUID | None = None
    success: bool | list[UUID]
    pathway: UUID | list[UUID] | None = None
    error: str | None = None


def _specs(runner: QueueRunner, count: int) -> list[str]:
    [stage] = list(runner.get_agent_stages())
    return [t.model_dump_json() for t in list(stage.get_tasks())[:count]]


# --- silent difference 2: a list of specs gives one result with list fields -------------------


def test_list_input_result_parses_with_the_peers_task_completion_result_shape(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = QueueRunner(basic_project.project_hash, user_client=encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str | None:
        return None if task.data_title.endswith("0001.jpg") else "complete"

    specs = _specs(runner, 3)
    result_json = agent(specs)
    assert isinstance(result_json, str)
    result = PeerTaskCompletionResult.model_validate_json(result_json)
    uuids = [AgentTask.model_validate_json(s).uuid for s in specs]
    complete = UUID(basic_project.pathway_uuids[STAGE]["complete"])
    assert result.task_uuid == uuids
    assert result.success == uuids  # the tasks that succeeded, including the one that stayed
    assert result.pathway == [complete, complete]  # only the tasks that moved
    assert result.stage_uuid == UUID(basic_project.stage_uuids[STAGE])
    assert result.error is None
    # A one-element list gives the one-task shape, as in encord-agents.
    single = PeerTaskCompletionResult.model_validate_json(agent(_specs(runner, 1)))
    assert isinstance(single.task_uuid, UUID) and single.success is True


def test_an_agent_error_in_a_list_fails_the_whole_call_and_applies_nothing(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = QueueRunner(basic_project.project_hash, user_client=encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        if task.data_title.endswith("0002.jpg"):
            raise RuntimeError("boom")
        return "complete"

    specs = _specs(runner, 4)
    result = PeerTaskCompletionResult.model_validate_json(agent(specs))
    assert result.success is False and result.pathway is None
    assert result.task_uuid == [AgentTask.model_validate_json(s).uuid for s in specs]
    assert result.error is not None and "RuntimeError: boom" in result.error
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 0


# --- silent difference 4: an unknown pathway raises PrintableError out of the wrapper ---------


@pytest.mark.parametrize("as_list", [False, True])
def test_unknown_pathway_raises_out_of_the_queue_wrapper(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    as_list: bool,
) -> None:
    runner = QueueRunner(basic_project.project_hash, user_client=encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "nowhere"

    specs = _specs(runner, 2)
    with pytest.raises(PrintableError, match="complete"):
        agent(specs if as_list else specs[0])
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 0


# --- silent difference 10: the sequential runner retries, logs and carries on -----------------


def test_wrong_return_type_is_retried_logged_and_the_run_goes_on(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = Runner(basic_project.project_hash, user_client=encord_client)
    calls: dict[str, int] = {}

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> object:
        calls[task.data_title] = calls.get(task.data_title, 0) + 1
        return 5 if task.data_title.endswith("0003.jpg") else "complete"

    with caplog.at_level(logging.WARNING, logger="agent_core"):
        runner(num_retries=2, task_batch_size=7)
    assert calls["image_0003.jpg"] == 3  # one attempt and num_retries retries
    assert emulator.state.stage_counts(basic_project.project_hash) == {STAGE: 1, "Complete": 19}
    assert any("image_0003" in r.getMessage() or "int" in r.getMessage() for r in caplog.records)


def test_priority_without_a_label_row_is_retried_and_the_run_goes_on(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(basic_project.project_hash, user_client=encord_client)
    attempts: list[str] = []

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> TaskAgentReturnStruct:
        if task.data_title.endswith("0004.jpg"):
            attempts.append(task.data_title)
            return TaskAgentReturnStruct(pathway="complete", label_row_priority=0.5)
        return TaskAgentReturnStruct("complete")  # positional, as the peer's dataclass allows

    runner(num_retries=1)
    assert attempts == ["image_0004.jpg"] * 2
    assert emulator.state.stage_counts(basic_project.project_hash) == {STAGE: 1, "Complete": 19}


# --- signatures (3, 5, 7) ----------------------------------------------------------------------


def test_user_client_keyword_and_the_sdk_error_for_an_unknown_key(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from encord.exceptions import AuthenticationError, AuthorisationError

    runner = Runner(project_hash=basic_project.project_hash, user_client=encord_client)
    assert runner.client is encord_client
    queue = QueueRunner(basic_project.project_hash, user_client=encord_client)
    assert queue.client is encord_client
    stranger = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    unknown = EncordUserClient.create_with_ssh_private_key(
        stranger.decode(), domain=emulator.domain
    )
    with pytest.raises((AuthenticationError, AuthorisationError)):
        Runner(project_hash=basic_project.project_hash, user_client=unknown)


def test_return_struct_is_a_dataclass_with_positional_fields() -> None:
    import dataclasses

    struct = TaskAgentReturnStruct("complete", None, 0.25)
    assert dataclasses.is_dataclass(struct)
    assert (struct.pathway, struct.label_row, struct.label_row_priority) == ("complete", None, 0.25)


def test_dependencies_called_directly(
    emulator: Emulator, basic_project: SeededFixture, encord_env: Emulator
) -> None:
    from agent_core.dependencies import (
        Twin,
        dep_asset,
        dep_client,
        dep_single_frame,
        dep_twin_label_row,
    )

    client = dep_client()
    assert isinstance(client, EncordUserClient)
    project = client.get_project(basic_project.project_hash)
    row = project.list_label_rows_v2()[0]
    [item] = client.get_storage_items([str(row.backing_item_uuid)], sign_url=True)
    frame = dep_single_frame(item)
    assert frame.ndim == 3 and frame.shape[2] == 3
    assets = dep_asset(item)
    path = next(assets)
    assert path.name == f"{item.uuid}.jpeg" and path.exists()
    assets.close()
    assert not path.exists()
    assert basic_project.twin_project_hash is not None
    twin = dep_twin_label_row(basic_project.twin_project_hash)(row)
    assert isinstance(twin, Twin) and twin.label_row.data_hash == row.data_hash
    with pytest.raises(PrintableError):
        dep_twin_label_row("00000000-0000-0000-0000-000000000000")(row)


def test_injected_dep_client_is_the_runners_client(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    from agent_core.dependencies import dep_client

    runner = Runner(basic_project.project_hash, user_client=encord_client)
    seen: list[object] = []

    @runner.stage(STAGE)
    def agent(client: Annotated[EncordUserClient, Depends(dep_client)]) -> None:
        seen.append(client)

    runner(max_tasks_per_stage=1)
    assert seen == [encord_client]


# --- import paths (9): the one-line rewrite gives the same objects ----------------------------

# (encord-agents module, name, agentkit home) for every task-agent name its docs and task tests
# import; after replacing "encord_agents" by "agent_core" each must be the home's object.
PEER_IMPORTS = [
    ("encord_agents", "FrameData", "agent_core.models"),
    ("encord_agents.exceptions", "PrintableError", "agent_core.exceptions"),
    ("encord_agents.tasks", "Runner", "agent_core.runner"),
    ("encord_agents.tasks", "QueueRunner", "agent_core.queue_runner"),
    ("encord_agents.tasks", "SequentialRunner", "agent_core.runner"),
    ("encord_agents.tasks", "Depends", "agent_core.dependencies.depends"),
    ("encord_agents.tasks.runner", "Runner", "agent_core.runner"),
    ("encord_agents.tasks.runner", "QueueRunner", "agent_core.queue_runner"),
    ("encord_agents.tasks.runner", "SequentialRunner", "agent_core.runner"),
    (
        "encord_agents.tasks.runner.sequential_runner",
        "MAX_LABEL_ROW_BATCH_SIZE",
        "agent_core.runner",
    ),
    ("encord_agents.tasks.runner.runner_base", "RunnerBase", "agent_core.runner_base"),
    ("encord_agents.tasks.runner.runner_base", "RunnerAgent", "agent_core.runner_base"),
    ("encord_agents.tasks.runner.queue_runner", "QueueRunner", "agent_core.queue_runner"),
    ("encord_agents.tasks.models", "TaskAgentReturnStruct", "agent_core.models"),
    ("encord_agents.tasks.models", "TaskCompletionResult", "agent_core.models"),
    ("encord_agents.tasks.models", "TaskAgentReturnType", "agent_core.models"),
    ("encord_agents.tasks.models", "AgentTaskConfig", "agent_core.models"),
    ("encord_agents.tasks.models", "DecoratedCallable", "agent_core.runner_base"),
    ("encord_agents.tasks.dependencies", "Depends", "agent_core.dependencies.depends"),
    ("encord_agents.tasks.dependencies", "Frame", "agent_core.models"),
    ("encord_agents.tasks.dependencies", "Twin", "agent_core.dependencies.builtin"),
    ("encord_agents.tasks.dependencies", "DataLookup", "agent_core.dependencies.builtin"),
    ("encord_agents.tasks.dependencies", "dep_client", "agent_core.dependencies.builtin"),
    ("encord_agents.tasks.dependencies", "dep_storage_item", "agent_core.dependencies.builtin"),
    ("encord_agents.tasks.dependencies", "dep_data_lookup", "agent_core.dependencies.builtin"),
    ("encord_agents.tasks.dependencies", "dep_twin_label_row", "agent_core.dependencies.builtin"),
    ("encord_agents.tasks.dependencies", "dep_asset", "agent_core.dependencies.vision"),
    ("encord_agents.tasks.dependencies", "dep_single_frame", "agent_core.dependencies.vision"),
    ("encord_agents.tasks.dependencies", "dep_video_iterator", "agent_core.dependencies.vision"),
    ("encord_agents.tasks.dependencies", "dep_video_sampler", "agent_core.dependencies.vision"),
    ("encord_agents.core.data_model", "Frame", "agent_core.models"),
    ("encord_agents.core.data_model", "FrameData", "agent_core.models"),
    ("encord_agents.core.data_model", "LabelRowMetadataIncludeArgs", "agent_core.models"),
    ("encord_agents.core.data_model", "LabelRowInitialiseLabelsArgs", "agent_core.models"),
    ("encord_agents.core.dependencies", "Depends", "agent_core.dependencies.depends"),
    ("encord_agents.core.dependencies.models", "Depends", "agent_core.dependencies.depends"),
    ("encord_agents.core.dependencies.models", "Context", "agent_core.core.dependencies.models"),
    (
        "encord_agents.core.dependencies.utils",
        "get_dependant",
        "agent_core.core.dependencies.utils",
    ),
    (
        "encord_agents.core.dependencies.utils",
        "solve_dependencies",
        "agent_core.core.dependencies.utils",
    ),
    ("encord_agents.core.dependencies.shares", "DataLookup", "agent_core.dependencies.builtin"),
    ("encord_agents.core.utils", "get_user_client", "agent_core.settings"),
    ("encord_agents.core.utils", "batch_iterator", "agent_core.encord_io"),
    ("encord_agents.core.utils", "download_asset", "agent_core.dependencies.vision"),
    ("encord_agents.core.utils", "get_frame_count", "agent_core.core.utils"),
    (
        "encord_agents.core.utils",
        "DOWNLOAD_NATIVE_IMAGE_GROUP_WO_FRAME_ERROR_MESSAGE",
        "agent_core.dependencies.vision",
    ),
    ("encord_agents.core.settings", "Settings", "agent_core.settings"),
    ("encord_agents.utils.generic_utils", "try_coerce_UUID", "agent_core.utils.generic_utils"),
]


@pytest.mark.parametrize(("peer_module", "name", "home"), PEER_IMPORTS)
def test_rewritten_import_gives_the_same_object(peer_module: str, name: str, home: str) -> None:
    rewritten = importlib.import_module(peer_module.replace("encord_agents", "agent_core", 1))
    home_name = {"batch_iterator": "chunked"}.get(name, name)
    assert getattr(rewritten, name) is getattr(importlib.import_module(home), home_name)


def test_run_stage_and_sequential_runner_alias(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    from agent_core.tasks import SequentialRunner

    assert SequentialRunner is Runner
    runner = SequentialRunner(basic_project.project_hash, user_client=encord_client)

    @runner.stage(STAGE)
    def agent(stage: AgentStage, lr: LabelRowV2) -> str:
        assert stage.title == STAGE and lr.is_labelling_initialised
        return "complete"

    runner.run_stage(STAGE, max_tasks=3)
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 3
    with pytest.raises(PrintableError):
        runner.run_stage("Complete")


def test_a_module_building_a_runner_imports_without_typer_or_rich() -> None:
    """typer and rich are the ``cli`` extra, not shipped to Lambda: only ``run()`` needs them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['typer'] = None\n"  # an import of typer (or rich) now fails
        "sys.modules['rich'] = None\n"
        "from agent_core.tasks import Runner, QueueRunner\n"
        "from agent_core.tasks.dependencies import dep_asset\n"
        "runner = Runner()\n"
        "@runner.stage('Agent 1')\n"
        "def agent() -> str:\n"
        "    return 'complete'\n"
        "print(len(runner.agents))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_a_failing_dependency_stops_the_sequential_run_as_in_the_peer(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(basic_project.project_hash, user_client=encord_client)
    solved: list[str] = []

    def flaky(task: AgentTask) -> str:
        solved.append(task.data_title)
        if task.data_title.endswith("0002.jpg"):
            raise ConnectionError("download failed")
        return task.data_title

    @runner.stage(STAGE)
    def agent(title: Annotated[str, Depends(flaky)]) -> str:
        return "complete"

    # encord-agents solves dependencies once per task, outside its retry loop: the error leaves
    # the run at once and nothing of the batch is applied.
    with pytest.raises(ConnectionError, match="download failed"):
        runner(num_retries=3, task_batch_size=5)
    assert solved.count("image_0002.jpg") == 1
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 0


def test_queue_runner_takes_a_second_function_for_a_stage(
    basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = QueueRunner(basic_project.project_hash, user_client=encord_client)

    @runner.stage(STAGE)
    def first(task: AgentTask) -> None:
        return None

    @runner.stage(STAGE)
    def second(task: AgentTask) -> str:
        return "complete"

    [spec_a, spec_b] = _specs(runner, 2)
    assert PeerTaskCompletionResult.model_validate_json(first(spec_a)).pathway is None
    assert PeerTaskCompletionResult.model_validate_json(second(spec_b)).pathway is not None


def test_data_lookup_as_the_peer_builds_it(
    basic_project: SeededFixture, encord_env: Emulator, encord_client: EncordUserClient
) -> None:
    from agent_core.core.dependencies.shares import DataLookup

    project = encord_client.get_project(basic_project.project_hash)
    row = project.list_label_rows_v2()[0]
    lookup = DataLookup.sharable(project)
    assert DataLookup.sharable(project) is lookup
    assert UUID(str(row.backing_item_uuid)) in lookup.backing_item_uuids
    [item] = lookup.get_storage_items([row.data_hash], sign_urls=True)
    assert item.uuid == row.backing_item_uuid
    assert lookup.get_storage_item(row.data_hash).uuid == row.backing_item_uuid
    # DataLookup([dataset_hash]) reads the datasets' data rows, which the emulator does not serve.


# --- emulator data types and label branches, through the runners (8, 11) ----------------------

ONE_OF_EACH: dict[str, object] = {
    "title": "One of each",
    "workflow": {
        "start": STAGE,
        "stages": [
            {"title": STAGE, "type": "AGENT", "pathways": [{"name": "complete", "to": "Done"}]},
            {"title": "Done", "type": "DONE"},
        ],
    },
    "media": [
        {"kind": kind, "count": 1, "title": title, "width": 64, "height": 48}
        for kind, title in [
            ("image", "image.jpg"),
            ("video", "video.mp4"),
            ("image_group", "group"),
            ("image_sequence", "sequence"),
            ("pdf", "doc.pdf"),
            ("audio", "sound.mp3"),
            ("text", "notes.txt"),
        ]
    ],
}


def test_media_dependencies_injected_for_every_data_type(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    from pathlib import Path

    import numpy as np

    from agent_core.dependencies import dep_asset, dep_single_frame

    seeded = emulator.seed(ONE_OF_EACH)
    runner = QueueRunner(seeded.project_hash, user_client=encord_client)
    suffixes: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}

    @runner.stage(STAGE)
    def assets(task: AgentTask, asset: Annotated[Path, Depends(dep_asset)]) -> None:
        suffixes[task.data_title] = asset.suffix

    @runner.stage(STAGE, overwrite=True)
    def frames(task: AgentTask, frame: Annotated[np.ndarray, Depends(dep_single_frame)]) -> None:
        shapes[task.data_title] = frame.shape

    [stage] = list(runner.get_agent_stages())
    specs = [t.model_dump_json() for t in stage.get_tasks()]
    for spec in specs:
        assets(spec)
        frames(spec)
    assert suffixes == {
        "image.jpg": ".jpeg",
        "video.mp4": ".mp4",
        "sequence": ".mp4",
        "doc.pdf": ".pdf",
        "sound.mp3": ".mp3",
        "notes.txt": ".txt",
    }  # an image group has no single file: that call failed, as encord-agents' does
    assert shapes == {t: (48, 64, 3) for t in ("image.jpg", "video.mp4", "group", "sequence")}


def test_stage_on_a_label_branch_reads_and_saves_that_branch(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    from encord.objects.coordinates import BoundingBoxCoordinates

    from agent_core.models import LabelRowMetadataIncludeArgs

    runner = Runner(basic_project.project_hash, user_client=encord_client)
    assert runner.project is not None
    box = runner.project.ontology_structure.objects[0]

    @runner.stage(
        STAGE, label_row_metadata_include_args=LabelRowMetadataIncludeArgs(branch_name="review")
    )
    def agent(lr: LabelRowV2) -> TaskAgentReturnStruct:
        assert lr.branch_name == "review"
        instance = box.create_instance()
        instance.set_for_frames(
            BoundingBoxCoordinates(height=0.3, width=0.3, top_left_x=0, top_left_y=0)
        )
        lr.add_object_instance(instance)
        return TaskAgentReturnStruct(pathway="complete", label_row=lr)

    runner(max_tasks_per_stage=2)
    moved = emulator.state.tasks_in_stage(basic_project.project_hash, "Complete")
    assert len(moved) == 2
    for task in moved:
        assert len(emulator.state.stored_objects(task.project_hash, task.data_hash, "review")) == 1
        assert emulator.state.stored_objects(task.project_hash, task.data_hash) == []


def test_settings_and_get_user_client_with_the_peers_names(
    basic_project: SeededFixture, encord_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_core.core.settings import Settings
    from agent_core.core.utils import get_user_client

    key_text = encord_env.ssh_key_path.read_text()
    monkeypatch.delenv("ENCORD_SSH_KEY_FILE")
    monkeypatch.setenv("ENCORD_SSH_KEY", key_text)
    settings = Settings()
    assert settings.ssh_key_content is not None and settings.ssh_key == key_text
    assert settings.domain == encord_env.domain
    assert key_text not in repr(settings)  # held as a secret
    client = get_user_client(settings)
    assert isinstance(client, EncordUserClient)
    # It reaches the emulator with that key.
    assert client.get_project(basic_project.project_hash).title
    monkeypatch.delenv("ENCORD_SSH_KEY")
    # pydantic wraps the error into a ValidationError (a ValueError), as it does encord-agents'.
    with pytest.raises(ValueError, match="ENCORD_SSH_KEY"):
        Settings()
