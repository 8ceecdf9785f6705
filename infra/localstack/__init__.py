"""The local stack: moto server + Encord emulator + a poller driving the real Lambda handlers.

Never imported by agent_core or handlers at run time in Lambda. Names are exported lazily so that
importing one piece (e.g. the event shapes) does not start importing the emulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "LocalLambdaContext",
    "LocalPoller",
    "LocalResources",
    "LocalStack",
    "MotoServer",
    "PipelineShape",
    "PollerFaults",
    "PollerStats",
    "SimulatedCrash",
    "create_resources",
]

if TYPE_CHECKING:
    from infra.localstack.moto import MotoServer
    from infra.localstack.poller import (
        LocalLambdaContext,
        LocalPoller,
        PollerFaults,
        PollerStats,
        SimulatedCrash,
    )
    from infra.localstack.resources import LocalResources, PipelineShape, create_resources
    from infra.localstack.stack import LocalStack

_LAZY = {
    "MotoServer": "infra.localstack.moto",
    "LocalLambdaContext": "infra.localstack.poller",
    "LocalPoller": "infra.localstack.poller",
    "PollerFaults": "infra.localstack.poller",
    "PollerStats": "infra.localstack.poller",
    "SimulatedCrash": "infra.localstack.poller",
    "LocalResources": "infra.localstack.resources",
    "PipelineShape": "infra.localstack.resources",
    "create_resources": "infra.localstack.resources",
    "LocalStack": "infra.localstack.stack",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'infra.localstack' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
