"""Workflow rules: stage lookup, where an action leads, listing order and page cursors.

Pure functions over the model objects; ``EmulatorState`` calls them under its lock and applies
what they decide.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from infra.emulator.errors import bad_request, not_found
from infra.emulator.model import Pathway, Project, Stage, Task


def stage_of(project: Project, key: str) -> Stage:
    """A stage of ``project`` by title or UUID; 404 if it has none."""
    stage = project.workflow.stage(str(key))
    if stage is None:
        raise not_found(f"Stage {key} is not a stage of project {project.project_hash}.")
    return stage


def pathway_for(stage: Stage, action: dict[str, Any], task: Task) -> Pathway:
    """The pathway a PATHWAY_ACTION names (``pathwayUuid`` or ``pathwayName``) in an agent stage."""
    if stage.stage_type != "AGENT":
        raise bad_request(
            f"PATHWAY_ACTION on task {task.uuid}: stage {stage.title!r} is a {stage.stage_type} "
            "stage, not an agent stage."
        )
    pathway_uuid = action.get("pathwayUuid")
    pathway_name = action.get("pathwayName")
    if pathway_uuid:
        pathway = stage.find_pathway(uuid_=str(pathway_uuid))
        wanted = f"with UUID {pathway_uuid}"
    elif pathway_name:
        pathway = stage.find_pathway(name=str(pathway_name))
        wanted = f"named {pathway_name!r}"
    else:
        raise bad_request(f"PATHWAY_ACTION on task {task.uuid} needs pathwayUuid or pathwayName.")
    if pathway is None:
        known = ", ".join(f"{p.name!r} ({p.uuid})" for p in stage.pathways)
        raise bad_request(
            f"Stage {stage.title!r} has no pathway {wanted} (task {task.uuid}). "
            f"Its pathways: {known or 'none'}."
        )
    return pathway


def next_stage(project: Project, stage: Stage, needed: str, target: str | None, kind: str) -> Stage:
    """Where SUBMIT/APPROVE/REJECT (``kind``) leads from ``stage``, which must be a ``needed`` stage."""
    if stage.stage_type != needed:
        raise bad_request(
            f"{kind} is not possible in stage {stage.title!r} ({stage.stage_type}); it accepts "
            f"{accepted_actions(stage)}."
        )
    if target is None:
        raise bad_request(f"Stage {stage.title!r} has no outgoing edge for {kind}.")
    return stage_of(project, target)


def accepted_actions(stage: Stage) -> str:
    """What a stage accepts, for the message of a rejected action."""
    return {
        "AGENT": "PATHWAY_ACTION, ASSIGN, RELEASE",
        "ANNOTATION": "SUBMIT, ASSIGN, RELEASE",
        "REVIEW": "APPROVE, REJECT, ASSIGN, RELEASE",
        "DONE": "no actions (only move-tasks)",
    }[stage.stage_type]


def listing_order(task: Task) -> tuple[float, int]:
    """Tasks are listed by priority (highest first), then age; a page cursor is this key."""
    return (-task.priority, task.seq)


def encode_page_token(order: tuple[float, int]) -> str:
    raw = json.dumps([order[0], order[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        first, second = json.loads(raw)
        return float(first), int(second)
    except (ValueError, TypeError):
        raise bad_request(f"Invalid pageToken {token!r}.") from None
