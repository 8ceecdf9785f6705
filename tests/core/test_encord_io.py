"""encord_io helpers against the emulator: request shapes that callers rely on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_core.encord_io import STAGE_CHECK_CHUNK, tasks_in_stage

if TYPE_CHECKING:
    from encord.user_client import EncordUserClient

    from infra.emulator import Emulator


def test_tasks_in_stage_splits_data_hashes_into_bounded_requests(
    emulator: Emulator, encord_client: EncordUserClient
) -> None:
    seeded = emulator.seed("demo")
    stage = encord_client.get_project(seeded.project_hash).workflow.get_stage(name="pre-label")
    in_stage = {t.data_hash for t in stage.get_tasks()}
    wanted = sorted(str(h) for h in in_stage)[: 2 * STAGE_CHECK_CHUNK + 7]
    emulator.counters.reset()

    found = tasks_in_stage(stage, [*wanted, wanted[0]])  # duplicates are asked once

    assert sorted(str(t.data_hash) for t in found) == wanted
    task_requests = sum(n for name, n in emulator.counters.snapshot().items() if "/tasks" in name)
    assert task_requests == 3  # 50 + 50 + 7 data hashes: the query string stays short
    assert tasks_in_stage(stage, []) == []
