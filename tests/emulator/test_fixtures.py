"""Fixtures (built-in and JSON), determinism, and concurrent clients."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from encord.user_client import EncordUserClient
from encord.workflow import AgentStage, AnnotationStage, FinalStage, ReviewStage
from encord.workflow.stages.agent import AgentTask

from infra.emulator import Emulator, FixtureSpec
from infra.emulator.fixtures import FIXTURE_DIR
from infra.emulator.fixtures import seed as seed_fixture
from infra.emulator.state import EmulatorState


def test_demo_fixture(emulator: Emulator, encord_client: EncordUserClient) -> None:
    started = time.monotonic()
    seeded = emulator.seed("demo")
    assert time.monotonic() - started < 5  # media is generated lazily, not at seeding
    project = encord_client.get_project(seeded.project_hash)
    kinds = {s.title: type(s) for s in project.workflow.stages}
    assert kinds == {
        "pre-label": AgentStage,
        "Annotate": AnnotationStage,
        "Review": ReviewStage,
        "quality-check": AgentStage,
        "Complete": FinalStage,
    }
    assert seeded.pathway_uuids.keys() == {"pre-label", "quality-check"}
    assert set(seeded.pathway_uuids["pre-label"]) == {"annotate", "skip"}
    assert set(seeded.pathway_uuids["quality-check"]) == {"accept", "reject"}
    assert emulator.state.stage_counts(seeded.project_hash) == {
        "pre-label": 258,
        "Annotate": 0,
        "Review": 0,
        "quality-check": 52,
        "Complete": 0,
    }
    qc = project.workflow.get_stage(name="quality-check", type_=AgentStage)
    qc_tasks = list(qc.get_tasks())
    rows = project.list_label_rows_v2(data_hashes=[str(t.data_hash) for t in qc_tasks])
    videos = [r for r in rows if r.data_type.value == "video"]
    assert len(rows) == 52 and len(videos) == 2 and all(r.label_hash for r in rows)
    assert (videos[0].number_of_frames, videos[0].fps) == (30, 10.0)
    assert seeded.twin is not None
    assert emulator.state.stage_counts(seeded.twin.project_hash)["pre-label"] == 310


def test_json_fixture_file(emulator: Emulator, encord_client: EncordUserClient) -> None:
    seeded = emulator.seed(FIXTURE_DIR / "example.json")
    project = encord_client.get_project(seeded.project_hash)
    assert project.title == "Example: two agent stages on images and a video"
    assert {o.title for o in project.ontology_structure.objects} == {"Car", "Road"}
    counts = emulator.state.stage_counts(seeded.project_hash)
    assert counts == {"triage": 13, "Label": 0, "check": 4, "Complete": 0}
    check = project.workflow.get_stage(name="check", type_=AgentStage)
    assert all(t.data_title.startswith("checked_") for t in check.get_tasks())
    assert emulator.state.client_metadata(seeded.data_hashes[2]) == {"camera": "cam-2"}
    assert emulator.state.priority(seeded.project_hash, seeded.data_hashes[12]) == 0.9


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"workflow": {"start": "X", "stages": []}}, "unknown stage 'X'"),
        (
            {"workflow": {"start": "A", "stages": [{"title": "A", "type": "AGENT"}]}},
            "needs at least one pathway",
        ),
        (
            {"workflow": {"start": "A", "stages": [{"title": "A", "type": "USER_ROUTER"}]}},
            "USER_ROUTER",
        ),
        (
            {
                "workflow": {"start": "D", "stages": [{"title": "D", "type": "DONE"}]},
                "media": [{"count": 1, "stage": "nowhere"}],
            },
            "nowhere",
        ),
    ],
)
def test_invalid_fixtures_are_explained(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        seed_fixture(EmulatorState(), spec)


def test_fixture_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a built-in"):
        FixtureSpec.load("nope")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        FixtureSpec.load(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"workflow": {"start": "A", "stages": []}, "extra": 1}))
    with pytest.raises(ValueError, match=r"wrong\.json"):
        FixtureSpec.load(wrong)


def test_same_seed_gives_same_ids() -> None:
    first, second = EmulatorState(seed=7), EmulatorState(seed=7)
    a, b = seed_fixture(first, "basic"), seed_fixture(second, "basic")
    assert a.project_hash == b.project_hash and a.data_hashes == b.data_hashes
    assert a.stage_uuids == b.stage_uuids and a.task_uuids == b.task_uuids
    assert seed_fixture(EmulatorState(seed=8), "basic").project_hash != a.project_hash


def test_concurrent_clients(emulator: Emulator, encord_client: EncordUserClient) -> None:
    seeded = emulator.seed(
        {
            "workflow": {
                "start": "A",
                "stages": [
                    {"title": "A", "type": "AGENT", "pathways": [{"name": "go", "to": "Done"}]},
                    {"title": "Done", "type": "DONE"},
                ],
            },
            "media": [{"count": 60, "width": 16, "height": 16}],
        }
    )
    project = encord_client.get_project(seeded.project_hash)
    stage = project.workflow.get_stage(name="A", type_=AgentStage)
    tasks = list(stage.get_tasks())
    errors: list[BaseException] = []

    def worker(chunk: list[AgentTask]) -> None:
        try:
            client = emulator.user_client()
            own = client.get_project(seeded.project_hash)
            rows = own.list_label_rows_v2(data_hashes=[str(t.data_hash) for t in chunk])
            with own.create_bundle() as bundle:
                for row in rows:
                    row.initialise_labels(bundle=bundle)
            for task in chunk:
                task.proceed(pathway_name="go")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(tasks[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert emulator.state.stage_counts(seeded.project_hash) == {"A": 0, "Done": 60}
    assert all(len(emulator.state.pathway_actions(str(t.uuid))) == 1 for t in tasks)
