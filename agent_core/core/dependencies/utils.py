"""``encord_agents.core.dependencies.utils`` under agentkit's package name: analyse a function's
dependency graph and solve it for a ``Context``, with encord-agents' keyword signatures."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from agent_core.core.dependencies.models import Context
from agent_core.dependencies import depends as _depends
from agent_core.dependencies.depends import Dependant, TaskContext

__all__ = ["SolvedDependency", "get_dependant", "solve_dependencies"]


@dataclass
class SolvedDependency:
    """The keyword arguments to call the analysed function with."""

    values: dict[str, Any]
    dependency_cache: dict[Any, Any] | None = None


def get_dependant(*, func: Callable[..., Any], name: str | None = None) -> Dependant:
    """Analyse ``func``'s signature (recursively); raises DependencyError if it cannot be."""
    return _depends.get_dependant(func, name=name)


def solve_dependencies(
    *,
    context: Context,
    dependant: Dependant,
    stack: ExitStack,
    dependency_cache: dict[Any, Any] | None = None,
) -> SolvedDependency:
    """The values to call ``dependant.func`` with; generator dependencies enter ``stack``."""
    task_context = TaskContext(
        task=context.task,  # type: ignore[arg-type]  # None raises only if a function asks for it
        project=context.project,
        stage=context.agent_stage,  # type: ignore[arg-type]
        client=None,  # type: ignore[arg-type]
        label_row=context.label_row,
        storage_item=context.storage_item,
    )
    cache = dependency_cache if dependency_cache is not None else {}
    values = _depends.solve_dependencies(dependant, task_context, stack, cache)
    return SolvedDependency(values=values, dependency_cache=cache)
