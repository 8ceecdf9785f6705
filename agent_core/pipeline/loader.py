"""Load the user's runner named by ``AGENT_MODULE`` ("package.module:attribute").

The attribute is a ``QueueRunner`` or a zero-argument callable that returns one (a factory, for
runners that read their project from the environment). It is loaded once per process and kept:
a warm Lambda reuses the runner and the Encord project it has cached.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from uuid import UUID

from agent_core.exceptions import AgentkitError, ConfigurationError

if TYPE_CHECKING:
    from agent_core.models import BatchItem, StageConfig, TaskOutcome
    from agent_core.settings import PipelineSettings


@runtime_checkable
class PipelineRunner(Protocol):
    """What the handlers need from a runner; ``agent_core.QueueRunner`` provides it."""

    @property
    def project_hash(self) -> str: ...

    def stage_configs(self) -> list[StageConfig]: ...

    def run_batch(
        self,
        stage: str | UUID,
        items: Sequence[BatchItem],
        *,
        should_continue: Callable[[], bool] | None = None,
        deadline: float | None = None,
        commit_deadline: float | None = None,
    ) -> list[TaskOutcome]: ...


_EXAMPLE = "AGENT_MODULE=agents.example:runner"


def parse_agent_module(spec: str) -> tuple[str, str]:
    """Split "package.module:attribute", or raise ConfigurationError saying what is wrong."""
    text = spec.strip()
    module, sep, attribute = text.partition(":")
    if not sep or not module or not attribute:
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r} must name a module and an attribute separated by a colon, "
            f"e.g. {_EXAMPLE}"
        )
    if not all(part.isidentifier() for part in module.split(".")):
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r}: {module!r} is not a dotted Python module path ({_EXAMPLE})"
        )
    if not attribute.isidentifier():
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r}: {attribute!r} is not a Python identifier ({_EXAMPLE})"
        )
    return module, attribute


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigurationError(
                f"AGENT_MODULE {spec!r}: module {module_name!r} was not found. Check the name, "
                "and that the module is packaged with the function (its top-level package must "
                "be importable from the code root)."
            ) from None
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r}: importing {module_name!r} failed because it imports "
            f"{missing!r}, which is not installed. Add it to the function's requirements."
        ) from exc
    except AgentkitError:
        # Raised by the runner itself (no Encord key, a bad project hash, an unknown stage):
        # its message already says what to do.
        raise
    except Exception as exc:
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {exc}. Fix the agent module (see the chained traceback)."
        ) from exc


def _looks_like_runner(obj: object) -> bool:
    return all(hasattr(obj, name) for name in ("project_hash", "stage_configs", "run_batch"))


def load_runner(spec: str, *, expected_project_hash: str | None = None) -> PipelineRunner:
    """Import and return the runner named by ``spec`` (no caching; see ``get_runner``)."""
    module_name, attribute = parse_agent_module(spec)
    module = _import(module_name, spec)
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        candidates = sorted(
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and _looks_like_runner(value)
        )
        hint = (
            f" Runners defined there: {', '.join(candidates)}."
            if candidates
            else " It defines no QueueRunner."
        )
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r}: module {module_name!r} has no attribute {attribute!r}.{hint}"
        ) from None

    if not _looks_like_runner(obj) and callable(obj) and not isinstance(obj, type):
        try:
            obj = obj()
        except AgentkitError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"AGENT_MODULE {spec!r}: calling the factory {attribute}() raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    if not _looks_like_runner(obj):
        kind = type(obj).__name__
        hint = (
            " A sequential Runner polls by itself; the Lambda pipeline needs "
            "QueueRunner(project_hash=...) with the same @runner.stage functions."
            if kind == "Runner"
            else ""
        )
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r} is a {kind}, not a QueueRunner (nor a function returning "
            f"one).{hint}"
        )

    project_hash = str(getattr(obj, "project_hash", "") or "")
    if not project_hash:
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r}: the runner has no project hash. Create it with "
            "QueueRunner(project_hash=os.environ['PROJECT_HASH'])."
        )
    if expected_project_hash and project_hash != expected_project_hash:
        raise ConfigurationError(
            f"AGENT_MODULE {spec!r} runs project {project_hash}, but PROJECT_HASH is "
            f"{expected_project_hash}. Make them agree (the runner should read PROJECT_HASH)."
        )
    runner: PipelineRunner = obj
    return runner


_cache: dict[tuple[str, str | None], PipelineRunner] = {}
_cache_lock = threading.Lock()


def get_runner(settings: PipelineSettings) -> PipelineRunner:
    """The process-wide runner for these settings, loaded on first use.

    Keyed by AGENT_MODULE and PROJECT_HASH so that a process whose configuration changes (the
    local stack, a test session) never keeps running an old project's runner.
    """
    key = (settings.agent_module, settings.project_hash)
    runner = _cache.get(key)
    if runner is not None:
        return runner
    with _cache_lock:
        runner = _cache.get(key)
        if runner is None:
            runner = load_runner(
                settings.agent_module, expected_project_hash=settings.project_hash or None
            )
            _cache[key] = runner
    return runner


def clear_runner_cache() -> None:
    with _cache_lock:
        _cache.clear()
