"""parse_envelope: whatever a body holds, the answer is an envelope or a PoisonMessageError."""

from __future__ import annotations

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


def test_a_valid_body_round_trips() -> None:
    envelope = TaskEnvelope(
        project_hash="p",
        stage_uuid="6011c844-fb26-438b-b465-0b0825951015",
        task={"uuid": "t", "data_hash": "d"},
    )
    assert parse_envelope(envelope.to_body()) == envelope
