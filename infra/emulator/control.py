"""Control handlers: ``/_emulator/...``, how tests and the CLI drive a running emulator.

Unsigned, uncounted, never faulted, and answered only to loopback clients (``app.py``). Seeding
and key registration belong to the ``Emulator`` object, reached through ``ControlHooks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.emulator import render
from infra.emulator.errors import ApiError, bad_request, not_found
from infra.emulator.faults import FaultRule
from infra.emulator.routing import Request, Response

if TYPE_CHECKING:
    from infra.emulator.app import EmulatorApp


@dataclass(frozen=True)
class ControlHooks:
    """What the control endpoints need from the ``Emulator`` object (seeding, keys, info)."""

    seed: Callable[[Any], dict[str, Any]]
    register_key: Callable[[list[str] | None], tuple[str, str]]
    info: Callable[[], dict[str, Any]]


def _hooks(app: EmulatorApp, req: Request) -> ControlHooks:
    if app.control is None:  # an app built without an Emulator object (no seeding, no keys)
        raise not_found(f"No control endpoint {req.method} {req.path.rstrip('/')}.")
    return app.control


def get_counters(app: EmulatorApp, req: Request) -> Response:
    return Response.json(
        {
            "counters": app.counters.snapshot(),
            "encord_total": app.counters.encord_total(),
            "media_total": app.counters.media_total(),
            "injected": app.counters.injected(),
        }
    )


def reset_counters(app: EmulatorApp, req: Request) -> Response:
    app.counters.reset()
    return Response(204)


def get_faults(app: EmulatorApp, req: Request) -> Response:
    return Response.json([r.to_dict() for r in app.faults.rules()])


def add_faults(app: EmulatorApp, req: Request) -> Response:
    body = req.json()
    rules = body if isinstance(body, list) else [body]
    if not all(isinstance(r, dict) for r in rules):
        raise bad_request("POST a FaultRule object or a list of them.")
    return Response.json([app.faults.add(FaultRule.from_dict(r)).to_dict() for r in rules])


def clear_faults(app: EmulatorApp, req: Request) -> Response:
    app.faults.clear()
    return Response(204)


def get_projects(app: EmulatorApp, req: Request) -> Response:
    return Response.json(app.state.projects_summary())


def get_info(app: EmulatorApp, req: Request) -> Response:
    return Response.json(_hooks(app, req).info())


def seed(app: EmulatorApp, req: Request) -> Response:
    hooks = _hooks(app, req)
    body = req.json()
    fixture = body.get("fixture") if isinstance(body, dict) else None
    if fixture is None:
        raise bad_request('POST {"fixture": "basic" | "demo" | <path> | <spec object>}.')
    try:
        return Response.json(hooks.seed(fixture))
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def register_key(app: EmulatorApp, req: Request) -> Response:
    hooks = _hooks(app, req)
    body = req.json() or {}
    hashes = body.get("project_hashes") if isinstance(body, dict) else None
    text, key_path = hooks.register_key(hashes)
    return Response.json({"ssh_private_key": text, "ssh_key_path": key_path})


def get_task(app: EmulatorApp, req: Request) -> Response:
    task_uuid = req.params["task_uuid"]
    try:
        task = app.state.task(task_uuid)
        stage = app.state.task_stage(task_uuid)
    except KeyError:
        raise ApiError(404, f"No task {task_uuid}.") from None
    return Response.json(render.task_history(task, stage))
