"""Package attributes that are imported on first use (PEP 562 ``__getattr__``/``__dir__``).

A package that re-exports names from heavy modules (the encord SDK, numpy, boto3) lists them here
instead of importing them, so that importing the package stays cheap (a Lambda cold start, a CLI
that only needs one piece). Standard library only, so any package may use it, ``infra`` included::

    from agent_core.lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {"Runner": "agent_core.runner"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps each exported name to the module that defines it. A name is imported from its
    module the first time it is read and then stored on the package, so later reads are plain
    attribute lookups.
    """
    homes = dict(exports)

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*homes, *vars(sys.modules[package])})

    return __getattr__, __dir__
