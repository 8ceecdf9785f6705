"""parse_envelope: whatever a body holds, the answer is an envelope or a PoisonMessageError."""

from __future__ import annotations

import json

import pytest

from agent_core.exceptions import PoisonMessageError
from agent_core.message import TaskEnvelope, parse_envelope


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,  # nested too deep for the JSON parser: RecursionError inside json
        '{"version": 1, "project_hash": "p", "stage_uuid": "x", "task": {}}',
        '{"version": 1e999}',
        "\ud800",
        "",
        "null",
    ],
    ids=["deep-nesting", "bad-stage-uuid", "huge-number", "lone-surrogate", "empty", "null"],
)
def test_unreadable_bodies_are_poison(body: str) -> None:
    with pytest.raises(PoisonMessageError):
        parse_envelope(body)


TASK = "0b7c7f3e-5b1a-4a8e-9d59-3c1f1c6e2f10"
DATA = "9e1f2a34-7d4c-4b5e-8f6a-1b2c3d4e5f60"


def _envelope(**task: object) -> TaskEnvelope:
    return TaskEnvelope(
        project_hash="p",
        stage_uuid="6011c844-fb26-438b-b465-0b0825951015",
        task={"uuid": TASK, "data_hash": DATA, **task},
    )


def test_a_valid_body_round_trips() -> None:
    envelope = _envelope()
    assert parse_envelope(envelope.to_body()) == envelope


def test_task_uuids_are_normalised_so_a_copy_shares_the_lease() -> None:
    parsed = parse_envelope(_envelope(uuid=TASK.upper(), data_hash=DATA.upper()).to_body())
    assert parsed.task_uuid == TASK and parsed.data_hash == DATA


@pytest.mark.parametrize(
    "uuid", ["a" * 3000, "t", 7, None], ids=["3000-chars", "short", "int", "none"]
)
def test_a_task_uuid_that_cannot_be_a_lease_key_is_poison(uuid: object) -> None:
    body = _envelope().to_body().replace(f'"{TASK}"', json.dumps(uuid))
    with pytest.raises(PoisonMessageError):
        parse_envelope(body)


@pytest.mark.parametrize("version", ["true", "1.0", '"1"'])
def test_the_version_is_parsed_strictly(version: str) -> None:
    body = _envelope().to_body().replace('"version":1', f'"version":{version}')
    with pytest.raises(PoisonMessageError, match="version"):
        parse_envelope(body)


def test_the_visit_names_the_stage_and_the_time_the_task_entered_it() -> None:
    first = _envelope(updated_at="2026-01-01T00:00:00Z")
    back = _envelope(updated_at="2026-01-02T00:00:00Z")
    assert first.visit != back.visit and str(first.stage_uuid) in first.visit
