"""Dependency injection for stage functions: ``Depends``, the graph analysis and its solver.

A stage function's signature is analysed once, when it is decorated, into a small tree of
``Dependant`` nodes (FastAPI style). Running a task only walks that tree: each parameter is either
one of the per-task objects the runner provides (``AgentTask``, ``LabelRowV2``, ``Project``,
``AgentStage``, ``StorageItem``, ``EncordUserClient``), matched by annotation, or the value of a
dependency function declared with ``Annotated[T, Depends(f)]`` or ``= Depends(f)``. The analysis
also tells the runner which per-task objects the whole tree needs, so that it fetches nothing else.

Per task, a dependency is called at most once (its value is shared by every function that asks for
it), and generator dependencies are entered into an ``ExitStack`` that the runner closes when the
task is done, whether the agent returned or raised.
"""

from __future__ import annotations

import enum
import functools
import inspect
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

from agent_core.exceptions import DependencyError

if TYPE_CHECKING:
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.user_client import EncordUserClient
    from encord.workflow.stages.agent import AgentStage, AgentTask

__all__ = ["Dependant", "Depends", "Provided", "TaskContext", "get_dependant", "solve_dependencies"]

# Set on a dependency function to make the analysis warn (DeprecationWarning) when it is used.
DEPRECATION_ATTR = "__agentkit_deprecated__"


class Depends:
    """Declare that a parameter's value comes from calling ``dependency`` for each task.

    Use it as ``x: Annotated[T, Depends(f)]`` or ``x: T = Depends(f)``. ``f``'s own parameters are
    injected the same way. ``Depends()`` without a callable uses the annotation ``T`` itself.
    With ``use_cache=False`` the dependency is called again wherever it is used in a task instead
    of its value being shared.
    """

    def __init__(
        self, dependency: Callable[..., Any] | None = None, *, use_cache: bool = True
    ) -> None:
        self.dependency = dependency
        self.use_cache = use_cache

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__name__", type(self.dependency).__name__)
        cache = "" if self.use_cache else ", use_cache=False"
        return f"{type(self).__name__}({name}{cache})"


class DependsDeclaredTwiceError(DependencyError, AssertionError):
    """A parameter has ``Depends`` in its annotation and as its default (an ``AssertionError``,
    as encord-agents raises)."""


class Provided(enum.Enum):
    """The per-task objects a runner provides by annotation."""

    TASK = "AgentTask"
    LABEL_ROW = "LabelRowV2"
    PROJECT = "Project"
    STAGE = "AgentStage"
    STORAGE_ITEM = "StorageItem"
    CLIENT = "EncordUserClient"


@functools.cache
def _provided_types() -> tuple[tuple[type, Provided], ...]:
    # Imported on first analysis, not at import time: the SDK pulls in numpy.
    from encord.objects.ontology_labels_impl import LabelRowV2
    from encord.project import Project
    from encord.storage import StorageItem
    from encord.user_client import EncordUserClient
    from encord.workflow.stages.agent import AgentStage, AgentTask

    return (
        (AgentTask, Provided.TASK),
        (LabelRowV2, Provided.LABEL_ROW),
        (Project, Provided.PROJECT),
        (AgentStage, Provided.STAGE),
        (StorageItem, Provided.STORAGE_ITEM),
        (EncordUserClient, Provided.CLIENT),
    )


@dataclass(frozen=True)
class Param:
    """One parameter of an analysed function: provided by the runner, or by a sub-dependency."""

    name: str
    provided: Provided | None = None
    dependant: Dependant | None = None


@dataclass(eq=False)
class Dependant:
    """The analysed form of a stage function or dependency (built once, walked per task)."""

    call: Callable[..., Any]
    name: str
    params: tuple[Param, ...]
    is_generator: bool = False
    use_cache: bool = True
    # Every per-task object this function and its sub-dependencies need, transitively.
    needs: frozenset[Provided] = field(default_factory=frozenset)

    @property
    def needs_label_row(self) -> bool:
        return Provided.LABEL_ROW in self.needs

    # encord-agents' names for the parts of its Dependant (its tests read them).
    @property
    def func(self) -> Callable[..., Any]:
        return self.call

    @property
    def dependencies(self) -> list[Dependant]:
        """The sub-dependencies of this node's parameters, in parameter order."""
        return [p.dependant for p in self.params if p.dependant is not None]

    @property
    def field_params(self) -> list[Param]:
        """The parameters the runner provides by annotation, in parameter order."""
        return [p for p in self.params if p.provided is not None]

    @property
    def needs_storage_item(self) -> bool:
        return Provided.STORAGE_ITEM in self.needs

    def iter_dependants(self) -> Iterator[Dependant]:
        """This node and every node under it (shared nodes once)."""
        seen: set[int] = set()
        todo = [self]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            todo.extend(p.dependant for p in node.params if p.dependant is not None)


def _target(call: Callable[..., Any]) -> Any:
    """The function behind ``call``: unwrapped partials/decorators, or a callable object's method."""
    target: Any = call
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target)
    if isinstance(target, type) or inspect.isfunction(target) or inspect.ismethod(target):
        return target
    method = inspect.getattr_static(type(target), "__call__", None)
    return method if inspect.isfunction(method) else target


def _describe(call: Callable[..., Any]) -> str:
    target = _target(call)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    return str(name or type(target).__name__)


def _namespace_for(
    call: Callable[..., Any], localns: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    target = _target(call)
    if isinstance(target, type):
        cls: Any = target
        target = cls.__init__
    namespace: dict[str, Any] = dict(getattr(target, "__globals__", {}))
    code = getattr(target, "__code__", None)
    closure = getattr(target, "__closure__", None)
    if code is not None and closure:
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                namespace.setdefault(name, cell.cell_contents)
            except ValueError:  # a cell not yet filled
                continue
    if localns:
        namespace.update(localns)
    # Lets `from __future__ import annotations` code import the SDK types only for type checkers.
    for cls, _ in _provided_types():
        namespace.setdefault(cls.__name__, cls)
    return namespace


def _resolve_annotation(
    call: Callable[..., Any], param: inspect.Parameter, localns: Mapping[str, Any] | None = None
) -> Any:
    """The parameter's annotation, evaluated if it is a string (``from __future__ import annotations``).

    Only parameter annotations are evaluated: a dependency's return annotation may name types
    (e.g. numpy's) that are imported only for type checkers. ``localns`` are the locals of the
    scope the function was decorated in, for functions defined inside other functions.
    """
    annotation = param.annotation
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, _namespace_for(call, localns))
    except Exception as exc:
        raise DependencyError(
            f"Could not resolve the annotation {annotation!r} of parameter {param.name!r} of "
            f"{_describe(call)} ({type(exc).__name__}: {exc}). Define or import the names it uses "
            "before the function is decorated."
        ) from None


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _provided_for(annotation: Any) -> Provided | None:
    annotation = _unwrap_optional(annotation)
    if not isinstance(annotation, type):
        return None
    for cls, provided in _provided_types():
        if issubclass(annotation, cls):
            return provided
    return None


def _is_generator(call: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(_target(call))


def _is_async(call: Callable[..., Any]) -> bool:
    target = _target(call)
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


_VALID = (
    "annotate it with one of AgentTask, LabelRowV2, Project, AgentStage, StorageItem or "
    "EncordUserClient, or declare it as `name: Annotated[T, Depends(function)]` "
    "(or `name: T = Depends(function)`), or give it a default value"
)


def get_dependant(
    call: Callable[..., Any],
    *,
    name: str | None = None,
    use_cache: bool = True,
    localns: Mapping[str, Any] | None = None,
    _building: dict[int, Dependant] | None = None,
    _path: tuple[Callable[..., Any], ...] = (),
) -> Dependant:
    """Analyse ``call``'s signature (recursively) into a ``Dependant``; DependencyError if it cannot be.

    ``localns`` helps resolve string annotations (``from __future__ import annotations``) of
    functions defined in a function body: pass the locals of the scope that decorates them.
    """
    if _building is None:
        _building = {}
    label = name or _describe(call)
    if any(c is call for c in _path):
        cycle = " -> ".join(_describe(c) for c in (*_path, call))
        raise DependencyError(f"Dependency cycle: {cycle}. A dependency cannot depend on itself.")
    known = _building.get(id(call))
    if known is not None and known.use_cache == use_cache:
        return known
    if not callable(call):
        raise DependencyError(f"Depends() needs a callable, got {call!r} ({type(call).__name__}).")
    if _is_async(call):
        raise DependencyError(
            f"{label} is an async function. The task runners call dependencies synchronously: "
            "make it a plain function or a generator."
        )
    deprecation = getattr(call, DEPRECATION_ATTR, None)
    if deprecation:
        warnings.warn(str(deprecation), DeprecationWarning, stacklevel=4 + len(_path))
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError) as exc:
        raise DependencyError(f"Cannot read the signature of {label}: {exc}") from None

    params: list[Param] = []
    needs: set[Provided] = set()
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise DependencyError(
                f"Parameter {param.name!r} of {label} is positional-only; injected parameters are "
                "passed by keyword."
            )
        annotation = _resolve_annotation(call, param, localns)
        depends: Depends | None = None
        if get_origin(annotation) is Annotated:
            base, *extras = get_args(annotation)
            for extra in extras:
                if isinstance(extra, Depends):
                    depends = extra
            annotation = base
        if isinstance(param.default, Depends):
            if depends is not None:
                raise DependsDeclaredTwiceError(
                    f"Cannot specify `Depends` in `Annotated` and default value together for "
                    f"parameter {param.name!r} of {label}; keep one."
                )
            depends = param.default
        if depends is not None:
            target = depends.dependency if depends.dependency is not None else annotation
            if target is inspect.Parameter.empty:
                raise DependencyError(
                    f"Parameter {param.name!r} of {label} uses Depends() without a function or an "
                    "annotation to call."
                )
            sub = get_dependant(
                target,
                use_cache=depends.use_cache,
                localns=localns,
                _building=_building,
                _path=(*_path, call),
            )
            params.append(Param(name=param.name, dependant=sub))
            needs |= sub.needs
            continue
        provided = _provided_for(annotation) if annotation is not inspect.Parameter.empty else None
        if provided is not None:
            params.append(Param(name=param.name, provided=provided))
            needs.add(provided)
            continue
        if param.default is not inspect.Parameter.empty:
            continue  # a plain default value (e.g. bound by functools.partial): leave it alone
        shown = (
            ""
            if annotation is inspect.Parameter.empty
            else f": {getattr(annotation, '__name__', annotation)}"
        )
        raise DependencyError(
            f"Cannot inject parameter `{param.name}{shown}` of {label}: {_VALID}. To pass fixed "
            "arguments to a dependency, wrap it (e.g. functools.partial) and depend on the wrapper."
        )

    dependant = Dependant(
        call=call,
        name=label,
        params=tuple(params),
        is_generator=_is_generator(call),
        use_cache=use_cache,
        needs=frozenset(needs),
    )
    _building[id(call)] = dependant
    return dependant


@dataclass
class TaskContext:
    """The per-task objects a runner has fetched; ``None`` for what no function needs."""

    task: AgentTask
    project: Project
    stage: AgentStage
    client: EncordUserClient
    label_row: LabelRowV2 | None = None
    storage_item: StorageItem | None = None

    def get(self, provided: Provided) -> Any:
        value: Any = {
            Provided.TASK: self.task,
            Provided.PROJECT: self.project,
            Provided.STAGE: self.stage,
            Provided.CLIENT: self.client,
            Provided.LABEL_ROW: self.label_row,
            Provided.STORAGE_ITEM: self.storage_item,
        }[provided]
        if value is None:
            task = self.task
            where = f"task {task.uuid} (data hash {task.data_hash})" if task else "this call"
            raise DependencyError(
                f"No {provided.value} is available for {where}; Encord returned none for it."
            )
        return value


def _cache_key(call: Callable[..., Any]) -> Any:
    try:
        hash(call)
    except TypeError:
        return ("id", id(call))
    return call


def solve_dependencies(
    dependant: Dependant,
    context: TaskContext,
    stack: ExitStack,
    cache: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments to call ``dependant.call`` with for this task.

    Generator dependencies are entered into ``stack``; close it when the task is done.
    """
    if cache is None:
        cache = {}
    values: dict[str, Any] = {}
    for param in dependant.params:
        if param.provided is not None:
            values[param.name] = context.get(param.provided)
            continue
        sub = param.dependant
        assert sub is not None
        key = _cache_key(sub.call)
        if sub.use_cache and key in cache:
            values[param.name] = cache[key]
            continue
        kwargs = solve_dependencies(sub, context, stack, cache)
        value: Any
        if sub.is_generator:
            value = stack.enter_context(contextmanager(sub.call)(**kwargs))
        else:
            value = sub.call(**kwargs)
        if sub.use_cache:
            cache[key] = value
        values[param.name] = value
    return values
