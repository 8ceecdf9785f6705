"""``encord_agents.utils.generic_utils`` under agentkit's package name."""

from __future__ import annotations

from uuid import UUID

__all__ = ["try_coerce_UUID"]


def try_coerce_UUID(candidate_uuid: str | UUID) -> UUID | None:
    """``candidate_uuid`` as a UUID, or None if it is not one."""
    if isinstance(candidate_uuid, UUID):
        return candidate_uuid
    try:
        return UUID(str(candidate_uuid))
    except ValueError:
        return None
