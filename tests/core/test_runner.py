"""The sequential Runner against the emulator: whole projects, retries, polling, CLI flags."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest
from encord.objects.ontology_labels_impl import LabelRowV2
from encord.workflow.stages.agent import AgentTask

from agent_core import Runner
from agent_core.exceptions import ConfigurationError, PathwayNotFoundError

if TYPE_CHECKING:
    from encord.user_client import EncordUserClient

    from infra.emulator import Emulator, SeededFixture

STAGE = "Agent 1"


def test_runner_moves_the_whole_basic_project_to_complete(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(project_hash=basic_project.project_hash, client=encord_client)
    titles: list[str] = []

    @runner.stage(STAGE)
    def agent(lr: LabelRowV2) -> str:
        titles.append(lr.data_title)
        return "complete"

    emulator.counters.reset()
    runner(task_batch_size=8)
    assert emulator.state.stage_counts(basic_project.project_hash) == {STAGE: 0, "Complete": 20}
    assert len(titles) == 20 == len(set(titles))
    requests = emulator.counters.snapshot()
    # Three batches (8, 8, 4): one listing, one initialise and one action bundle each.
    assert sum(n for k, n in requests.items() if k.endswith("/actions")) == 3
    assert requests["RPC labelrowmetadata.GET"] == 3


def test_runner_retries_a_flaky_agent(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(project_hash=basic_project.project_hash, client=encord_client)
    attempts: Counter[str] = Counter()

    @runner.stage(STAGE)
    def flaky(task: AgentTask) -> str:
        attempts[str(task.uuid)] += 1
        if attempts[str(task.uuid)] < 3:
            raise ConnectionError("model server busy")
        return "complete"

    runner(num_retries=2, max_tasks_per_stage=5)
    assert sorted(attempts.values()) == [3] * 5
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 5


def test_runner_continues_after_failures(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = Runner(project_hash=basic_project.project_hash, client=encord_client)
    calls: Counter[str] = Counter()

    @runner.stage(STAGE)
    def sometimes(lr: LabelRowV2) -> str:
        calls[lr.data_title] += 1
        if lr.data_title.endswith(("3.jpg", "7.jpg")):
            raise ValueError(f"cannot handle {lr.data_title}")
        return "complete"

    runner(num_retries=1, task_batch_size=6)
    assert emulator.state.stage_counts(basic_project.project_hash) == {STAGE: 4, "Complete": 16}
    assert {t: n for t, n in calls.items() if n != 1} == {
        t: 2 for t in calls if t.endswith(("3.jpg", "7.jpg"))
    }
    assert "cannot handle" in caplog.text


def test_unknown_pathway_stops_the_run_with_the_valid_pathways(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(client=encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "done" if task.data_title.endswith("2.jpg") else "complete"

    with pytest.raises(PathwayNotFoundError, match='"complete"'):
        runner(project_hash=basic_project.project_hash, task_batch_size=5)
    # As in encord-agents, nothing of the batch with the bad return value was applied.
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 0


def test_refresh_every_polls_again(
    basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(project_hash=basic_project.project_hash, client=encord_client)
    passes: list[float] = []
    seen_this_pass: set[str] = set()

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> None:
        # The tasks stay in the stage, so a pass starts when a task comes round again.
        if not passes or task.uuid in seen_this_pass:
            passes.append(time.monotonic())
            seen_this_pass.clear()
        seen_this_pass.add(task.uuid)
        if len(passes) == 3:
            raise KeyboardInterrupt  # the way a user stops a polling runner

    with pytest.raises(KeyboardInterrupt):
        runner(refresh_every=1, max_tasks_per_stage=2)
    assert len(passes) == 3
    # A pass's first agent call trails its start by the listing time, which varies on a loaded
    # machine; a runner that did not wait would come round in a few milliseconds.
    assert passes[1] - passes[0] >= 0.6 and passes[2] - passes[1] >= 0.6


def test_pre_execution_callback_sees_the_project_and_can_stop_the_run(
    emulator: Emulator, basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    seen: list[str] = []

    def check(runner: Runner) -> None:
        assert runner.project is not None
        seen.append(runner.project.project_hash)
        runner.project.ontology_structure.get_child_by_title("Car")  # not in this ontology

    runner = Runner(pre_execution_callback=check, client=encord_client)

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        return "complete"

    with pytest.raises(Exception, match="Car"):
        runner(project_hash=basic_project.project_hash)
    assert seen == [basic_project.project_hash]
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 0


def test_cli_flags(
    emulator: Emulator,
    basic_project: SeededFixture,
    encord_client: EncordUserClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner = Runner(client=encord_client)
    attempts: Counter[str] = Counter()

    @runner.stage(STAGE)
    def agent(task: AgentTask) -> str:
        attempts[str(task.uuid)] += 1
        if attempts[str(task.uuid)] == 1:
            raise RuntimeError("first try fails")
        return "complete"

    with pytest.raises(SystemExit) as info:
        runner.run(
            [
                "--project-hash", basic_project.project_hash,
                "--num-retries", "1",
                "--task-batch-size", "3",
                "--max-tasks-per-stage", "7",
            ]
        )  # fmt: skip
    assert info.value.code == 0
    assert runner.was_called_from_cli
    assert emulator.state.stage_counts(basic_project.project_hash)["Complete"] == 7
    with pytest.raises(SystemExit) as info:
        runner.run(["--project-hash", "nope"])
    assert info.value.code == 2
    assert "not a UUID" in capsys.readouterr().err


def test_stage_not_in_the_called_project_is_reported(
    basic_project: SeededFixture, encord_client: EncordUserClient
) -> None:
    runner = Runner(client=encord_client)

    @runner.stage("Agent 2")
    def agent(task: AgentTask) -> str:
        return "complete"

    from agent_core.exceptions import StageNotFoundError

    with pytest.raises(StageNotFoundError) as info:
        runner(project_hash=basic_project.project_hash)
    message = str(info.value)
    assert "Agent 2" in message and '@runner.stage(stage="Agent 1")' in message
    assert "def agent(" in message
    with pytest.raises(ConfigurationError, match="max_tasks_per_stage"):
        runner(project_hash=basic_project.project_hash, max_tasks_per_stage=0)

    both = Runner(client=encord_client)
    both.stage(STAGE)(agent)
    both.stage(basic_project.stage_uuids[STAGE])(agent)  # the same stage, by UUID
    # As in encord-agents, both run in turn: the first moves the tasks, the second finds none.
    both(project_hash=basic_project.project_hash)
    assert not list(both._stage_for(both.agents[0], both.project).get_tasks())  # type: ignore[arg-type]
