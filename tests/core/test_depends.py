"""Dependency graph analysis (once, at decoration) and solving (per task), without Encord I/O."""

# No `from __future__ import annotations` here: the functions below are local and their
# annotations name local objects, which only eager annotations can see (as with FastAPI).

import functools
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Annotated

import pytest
from encord.objects.ontology_labels_impl import LabelRowV2
from encord.project import Project
from encord.storage import StorageItem
from encord.user_client import EncordUserClient
from encord.workflow.stages.agent import AgentStage, AgentTask

from agent_core import Depends
from agent_core.dependencies.depends import (
    Provided,
    TaskContext,
    get_dependant,
    solve_dependencies,
)
from agent_core.exceptions import DependencyError


def context(task: SimpleNamespace, **extra: object) -> TaskContext:
    values: dict[str, object] = {
        "task": task,
        "project": SimpleNamespace(name="project"),
        "stage": SimpleNamespace(name="stage"),
        "client": SimpleNamespace(name="client"),
        "label_row": SimpleNamespace(name="label_row", data_title=task.data_title),
        "storage_item": SimpleNamespace(name="storage_item", client_metadata={"k": 1}),
    }
    values.update(extra)
    return TaskContext(**values)  # type: ignore[arg-type]


def test_provided_types_are_matched_by_annotation() -> None:
    def agent(
        task: AgentTask,
        lr: LabelRowV2,
        project: Project,
        stage: AgentStage,
        item: StorageItem,
        client: EncordUserClient,
    ) -> None: ...

    dependant = get_dependant(agent)
    assert [p.provided for p in dependant.params] == [
        Provided.TASK,
        Provided.LABEL_ROW,
        Provided.PROJECT,
        Provided.STAGE,
        Provided.STORAGE_ITEM,
        Provided.CLIENT,
    ]
    assert dependant.needs_label_row and dependant.needs_storage_item


def test_needs_are_transitive_and_nothing_more() -> None:
    def only_task(task: AgentTask) -> str:
        return str(task.uuid)

    def title(lr: LabelRowV2) -> str:
        return str(lr.data_title)

    def nested(t: Annotated[str, Depends(title)]) -> str:
        return t

    def agent_a(x: Annotated[str, Depends(only_task)]) -> None: ...

    def agent_b(y: str = Depends(nested)) -> None: ...

    a, b = get_dependant(agent_a), get_dependant(agent_b)
    assert a.needs == {Provided.TASK}
    assert not a.needs_label_row and not a.needs_storage_item
    assert b.needs == {Provided.LABEL_ROW}
    assert b.needs_label_row and not b.needs_storage_item


def test_shared_dependency_runs_once_per_task_and_again_for_the_next(
    fake_task: SimpleNamespace,
) -> None:
    calls: list[str] = []

    def shared(task: AgentTask) -> str:
        calls.append(str(task.uuid))
        return f"value-{len(calls)}"

    def left(v: Annotated[str, Depends(shared)]) -> str:
        return "L" + v

    def right(v: str = Depends(shared)) -> str:
        return "R" + v

    def agent(
        a: Annotated[str, Depends(left)],
        b: Annotated[str, Depends(right)],
        c: str = Depends(shared),
    ) -> None: ...

    dependant = get_dependant(agent)
    with ExitStack() as stack:
        values = solve_dependencies(dependant, context(fake_task), stack)
    assert values == {"a": "Lvalue-1", "b": "Rvalue-1", "c": "value-1"}
    assert len(calls) == 1
    with ExitStack() as stack:
        solve_dependencies(dependant, context(fake_task), stack)
    assert len(calls) == 2  # a new task gets a new value


def test_use_cache_false_calls_again(fake_task: SimpleNamespace) -> None:
    counter = iter(range(100))

    def fresh() -> int:
        return next(counter)

    def agent(a: int = Depends(fresh), b: int = Depends(fresh, use_cache=False)) -> None: ...

    with ExitStack() as stack:
        values = solve_dependencies(get_dependant(agent), context(fake_task), stack)
    assert values["a"] != values["b"]


def test_generator_dependencies_close_after_the_task_even_when_it_raises(
    fake_task: SimpleNamespace,
) -> None:
    events: list[str] = []

    def resource(task: AgentTask) -> Iterator[str]:
        events.append("open")
        try:
            yield "handle"
        finally:
            events.append("closed")

    def agent(handle: Annotated[str, Depends(resource)]) -> str:
        events.append(f"use {handle}")
        raise RuntimeError("agent failed")

    dependant = get_dependant(agent)
    assert dependant.params[0].dependant is not None
    assert dependant.params[0].dependant.is_generator
    with pytest.raises(RuntimeError, match="agent failed"), ExitStack() as stack:
        values = solve_dependencies(dependant, context(fake_task), stack)
        assert events == ["open"]
        agent(**values)
    assert events == ["open", "use handle", "closed"]


def test_depends_without_callable_uses_the_annotation(fake_task: SimpleNamespace) -> None:
    class Settings:
        def __init__(self, task: AgentTask) -> None:
            self.uuid = task.uuid

    def agent(settings: Annotated[Settings, Depends()]) -> None: ...

    with ExitStack() as stack:
        values = solve_dependencies(get_dependant(agent), context(fake_task), stack)
    assert values["settings"].uuid == fake_task.uuid


def test_partial_and_plain_defaults(fake_task: SimpleNamespace) -> None:
    def scaled(task: AgentTask, factor: int, offset: int = 1) -> str:
        return f"{task.data_title}:{factor}:{offset}"

    def agent(value: Annotated[str, Depends(functools.partial(scaled, factor=3))]) -> None: ...

    with ExitStack() as stack:
        values = solve_dependencies(get_dependant(agent), context(fake_task), stack)
    assert values == {"value": "x.jpg:3:1"}


def test_uninjectable_parameter_is_reported_at_decoration() -> None:
    def my_dependency(arg1: str, arg2: int) -> str:
        return arg1 * arg2

    def agent(dep: Annotated[str, Depends(my_dependency)]) -> None: ...

    with pytest.raises(DependencyError) as info:
        get_dependant(agent)
    message = str(info.value)
    assert "arg1: str" in message and "my_dependency" in message
    assert "Depends(function)" in message and "functools.partial" in message


def test_cycles_and_async_functions_are_rejected() -> None:
    def a(x: int = Depends(lambda: 1)) -> int:
        return x

    def loop(x: int = Depends(a)) -> int:
        return x

    # A function whose dependency is itself.
    def selfish(x: int = 0) -> int:
        return x

    selfish.__defaults__ = (Depends(selfish),)
    with pytest.raises(DependencyError, match="cycle"):
        get_dependant(selfish)
    assert get_dependant(loop).needs == frozenset()

    async def remote() -> int:
        return 1

    def agent(x: int = Depends(remote)) -> None: ...

    with pytest.raises(DependencyError, match="async"):
        get_dependant(agent)


def test_missing_provided_object_is_a_dependency_error(fake_task: SimpleNamespace) -> None:
    def agent(lr: LabelRowV2) -> None: ...

    with pytest.raises(DependencyError, match="No LabelRowV2"), ExitStack() as stack:
        solve_dependencies(get_dependant(agent), context(fake_task, label_row=None), stack)


def test_deprecated_dependency_warns_at_decoration() -> None:
    from agent_core.dependencies import dep_data_lookup

    def agent(lookup=Depends(dep_data_lookup)) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.warns(DeprecationWarning, match="dep_storage_item"):
        dependant = get_dependant(agent)
    assert dependant.needs == {Provided.CLIENT, Provided.PROJECT}


def test_builtin_dependencies_resolve_their_string_annotations() -> None:
    from agent_core.dependencies import (
        dep_asset,
        dep_client,
        dep_single_frame,
        dep_storage_item,
        dep_twin_label_row,
        dep_video_iterator,
        dep_video_sampler,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dep, needs in [
            (dep_client, {Provided.CLIENT}),
            (dep_storage_item, {Provided.STORAGE_ITEM}),
            (dep_asset, {Provided.STORAGE_ITEM}),
            (dep_single_frame, {Provided.STORAGE_ITEM}),
            (dep_video_iterator, {Provided.STORAGE_ITEM}),
            (dep_video_sampler, {Provided.STORAGE_ITEM}),
            (
                dep_twin_label_row("00000000-0000-0000-0000-000000000000"),
                {
                    Provided.TASK,
                    Provided.CLIENT,
                },
            ),
        ]:
            assert get_dependant(dep).needs == needs, dep
    # Media dependencies do not need the label row: nothing is initialised for them.
    assert not get_dependant(dep_video_iterator).needs_label_row
