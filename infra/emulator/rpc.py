"""RPC handlers: the legacy ``POST /public`` calls (label rows and their workflow node).

The body names the call (``query_type`` + ``query_method``, e.g. ``labelrow.GET``) and carries
``values: {uid, payload}``; the ``ResourceType``/``ResourceID`` headers name the project. Answers
are the legacy envelope ``{status, response}`` with HTTP 200, errors included.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from infra.emulator import render
from infra.emulator.errors import ApiError, bad_request, forbidden
from infra.emulator.model import LabelRowFilter, ids
from infra.emulator.rest import actor
from infra.emulator.routing import Request, Response

if TYPE_CHECKING:
    from infra.emulator.app import EmulatorApp

RpcHandler = Callable[["EmulatorApp", Request, str, Any, Any], Any]


def call_name(body: bytes) -> str:
    """``labelrow.GET`` for counters and fault rules, read before the body is verified."""
    try:
        data = json.loads(body)
        query_type = str(data.get("query_type", "?")).lower()
        return f"{query_type}.{str(data.get('query_method', '?')).upper()}"
    except (ValueError, AttributeError):
        return "invalid"


def dispatch(app: EmulatorApp, req: Request) -> Response:
    """The route handler of ``POST /public`` (signature already verified): check the call and run
    it. ``app`` wraps an ``ApiError`` in the envelope."""
    body = req.json()
    if not isinstance(body, dict):
        raise bad_request("The RPC body must be an object.")
    name = f"{str(body.get('query_type', '')).lower()}.{str(body.get('query_method', '')).upper()}"
    values = body.get("values") or {}
    handler = HANDLERS.get(name)
    if handler is None:
        app.warn_once(f"RPC {name}")
        return Response.json(
            {
                "status": 400,
                "response": ["EMULATOR_NOT_IMPLEMENTED"],
                "payload": f"The emulator does not implement {name}.",
            }
        )
    resource_type = req.headers.get("ResourceType", "")
    project_hash = req.headers.get("ResourceID", "").lower()
    if resource_type != "project" or not project_hash:
        raise bad_request(f"{name} needs ResourceType project and a ResourceID.")
    if not app.state.has_project(project_hash) or not req.caller.allows(project_hash):
        raise forbidden(f"You are not authorised to access project {project_hash}.")
    result = handler(app, req, project_hash, values.get("uid"), values.get("payload") or {})
    return Response.json({"status": 200, "response": result})


def error(exc: ApiError) -> Response:
    """An RPC error: HTTP 200 with the status and code in the envelope, as the platform answers."""
    return Response.json({"status": exc.status, "response": [exc.rpc_code], "payload": exc.message})


def _uid_list(uid: Any, what: str) -> list[str]:
    if isinstance(uid, str):
        return [uid]
    if not isinstance(uid, list) or not all(isinstance(u, str) for u in uid):
        raise bad_request(f"uid must be a list of {what}.")
    return list(uid)


def list_label_rows(
    app: EmulatorApp, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    def dt(name: str) -> datetime | None:
        value = payload.get(name)
        if not value:
            return None
        from encord.common.time_parser import parse_datetime

        return parse_datetime(value)

    flt = LabelRowFilter(
        data_hashes=ids(payload.get("data_hashes")),
        label_hashes=ids(payload.get("label_hashes")),
        data_title_eq=payload.get("data_title_eq"),
        data_title_like=payload.get("data_title_like"),
        stage_title_eq=payload.get("workflow_graph_node_title_eq"),
        stage_title_like=payload.get("workflow_graph_node_title_like"),
        annotation_task_statuses=set(payload["label_statuses"])
        if payload.get("label_statuses")
        else None,
        edited_before=dt("edited_before"),
        edited_after=dt("edited_after"),
        branch_name=payload.get("branch_name"),
    )
    views = app.state.list_label_rows(project_hash, flt)
    if not payload.get("include_uninitialised_labels", False):
        views = [v for v in views if v.row is not None]
    return [render.label_row_metadata(v, app.links, payload) for v in views]


def get_label_rows(
    app: EmulatorApp, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    views = app.state.label_rows(project_hash, _uid_list(uid, "label hashes"))
    return [render.label_row(v, app.links, payload) for v in views]


def create_label_rows(
    app: EmulatorApp, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    views = app.state.create_label_rows(
        project_hash, _uid_list(uid, "data hashes"), payload.get("branch_name")
    )
    return [render.label_row(v, app.links, payload) for v in views]


def save_label_rows(
    app: EmulatorApp, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    label_hashes = _uid_list(uid, "label hashes")
    labels = payload.get("labels")
    if not payload.get("multi_request"):
        labels = [payload]
    if not isinstance(labels, list):
        raise bad_request("payload.labels must be a list of label rows.")
    app.state.save_label_rows(project_hash, label_hashes, labels)
    return True


def workflow_node(app: EmulatorApp, req: Request, project_hash: str, uid: Any, payload: Any) -> Any:
    app.state.workflow_jump(
        project_hash, _uid_list(uid, "label hashes"), str(payload.get("action")), actor(req)
    )
    return True


# The RPC calls the emulator answers; the rest get EMULATOR_NOT_IMPLEMENTED.
HANDLERS: dict[str, RpcHandler] = {
    "labelrowmetadata.GET": list_label_rows,
    "labelrow.GET": get_label_rows,
    "labelrow.PUT": create_label_rows,
    "labelrow.POST": save_label_rows,
    "labelworkflowgraphnode.POST": workflow_node,
}
