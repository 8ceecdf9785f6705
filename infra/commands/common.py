"""Helpers shared by the local commands (the operator ones are in agent_core/commands/_common.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.localstack.resources import PipelineShape


def load_shape(template: Path | None) -> PipelineShape:
    """The queue/function shape from template.yaml, or the template's defaults if it is absent."""
    from infra.localstack.resources import PipelineShape
    from infra.template_config import DEFAULT_TEMPLATE_PATH

    if template is None and not DEFAULT_TEMPLATE_PATH.exists():
        # An installed kit without the repository's template: use the template's defaults.
        return PipelineShape()
    return PipelineShape.from_template(template)
