"""REST handlers: the signed ``/v2/public/...`` routes (projects, workflow stages, storage).

Each handler reads the request (``req.params`` from the path, the query, the JSON body), calls one
``EmulatorState`` method with the caller's access (``req.caller``) and renders what comes back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.emulator import render
from infra.emulator.errors import bad_request, forbidden
from infra.emulator.model import TaskFilter, ids
from infra.emulator.routing import Request, Response

if TYPE_CHECKING:
    from infra.emulator.app import EmulatorApp


def actor(req: Request) -> str:
    """How the task history names the caller."""
    return f"{req.caller.name}@emulator"


def allowed_project(app: EmulatorApp, req: Request) -> str:
    """The path's project hash, if it exists and the caller's key may use it (else 403)."""
    project_hash = req.params["project_hash"]
    if not app.state.has_project(project_hash) or not req.caller.allows(project_hash):
        raise forbidden(f"You are not authorised to access project {project_hash}.")
    return project_hash


# -- projects and ontologies ---------------------------------------------------------------------
def get_project(app: EmulatorApp, req: Request) -> Response:
    project, ontology = app.state.project_outline(allowed_project(app, req))
    return Response.json(render.project(project, ontology))


def get_ontology(app: EmulatorApp, req: Request) -> Response:
    ontology_hash = req.params["ontology_hash"]
    ontology, users = app.state.ontology(ontology_hash)
    if ontology is None or not any(req.caller.allows(p) for p in users):
        raise forbidden(f"Ontology {ontology_hash} does not exist or you have no access to it.")
    return Response.json(render.ontology(ontology))


def list_project_datasets(app: EmulatorApp, req: Request) -> Response:
    datasets = app.state.project_datasets(allowed_project(app, req))
    return Response.json({"results": [render.dataset(d) for d in datasets]})


def set_priorities(app: EmulatorApp, req: Request) -> Response:
    project_hash = allowed_project(app, req)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("priorities"), list):
        raise bad_request("The body must be {priorities: [[data_hash, priority], ...]}.")
    app.state.set_priorities(project_hash, body["priorities"])
    return Response.json(None)


# -- workflow ------------------------------------------------------------------------------------
def list_tasks(app: EmulatorApp, req: Request) -> Response:
    project_hash = allowed_project(app, req)
    flt = TaskFilter(
        data_hashes=ids(req.q_list("dataHashes")),
        dataset_hashes=ids(req.q_list("datasetHashes")),
        user_emails=set(req.q_list("userEmails") or []) or None,
        statuses=set(req.q_list("statuses") or []) or None,
        data_title_contains=req.q_one("dataTitleContains"),
    )
    page, token = app.state.list_tasks(
        project_hash, req.params["stage_uuid"], flt, req.q_one("pageToken")
    )
    results = [render.task(task, unit.title) for task, unit in page]
    return Response.json({"results": results, "nextPageToken": token})


def stage_actions(app: EmulatorApp, req: Request) -> Response:
    project_hash = allowed_project(app, req)
    actions = req.json()
    if not isinstance(actions, list):
        raise bad_request("The body must be a list of actions.")
    app.state.apply_actions(project_hash, req.params["stage_uuid"], actions, actor(req))
    return Response.json(None)


def move_tasks(app: EmulatorApp, req: Request) -> Response:
    project_hash = allowed_project(app, req)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("taskUuids"), list):
        raise bad_request("The body must be {taskUuids: [...], destinationStageUuid}.")
    app.state.move_tasks(
        project_hash,
        req.params["stage_uuid"],
        str(body.get("destinationStageUuid", "")),
        body["taskUuids"],
        actor(req),
    )
    return Response.json(None)


def list_reviews(app: EmulatorApp, req: Request) -> Response:
    allowed_project(app, req)
    return Response.json({"results": [], "nextPageToken": None})


# -- storage -------------------------------------------------------------------------------------
def get_items_bulk(app: EmulatorApp, req: Request) -> Response:
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("itemUuids"), list):
        raise bad_request("The body must be {itemUuids: [...], signUrls}.")
    sign = bool(body.get("signUrls"))
    items = app.state.storage_items([str(u) for u in body["itemUuids"]], req.caller.project_hashes)
    return Response.json({"results": [render.storage_item(i, app.links, sign) for i in items]})


def get_item(app: EmulatorApp, req: Request) -> Response:
    item = app.state.storage_item(req.params["item_uuid"], req.caller.project_hashes)
    return Response.json(render.storage_item(item, app.links, req.q_bool("signUrl")))


def get_child_items(app: EmulatorApp, req: Request) -> Response:
    images = app.state.child_items(
        req.params["item_uuid"], req.caller.project_hashes, req.params["folder_uuid"]
    )
    sign = req.q_bool("signUrls")
    children = [render.storage_item(i, app.links, sign) for i in images]
    return Response.json({"results": children, "nextPageToken": None})


def patch_item(app: EmulatorApp, req: Request) -> Response:
    item_uuid = req.params["item_uuid"]
    app.state.storage_item(item_uuid, req.caller.project_hashes, req.params["folder_uuid"])
    return Response.json(_patch(app, req, item_uuid, req.json()))


def patch_items_bulk(app: EmulatorApp, req: Request) -> Response:
    body = req.json()
    patches = body.get("itemPatches") if isinstance(body, dict) else None
    if not isinstance(patches, dict):
        raise bad_request("The body must be {itemPatches: {item_uuid: patch}}.")
    # Every item is checked before any is changed.
    app.state.storage_items(list(patches), req.caller.project_hashes)
    return Response.json({"results": [_patch(app, req, u, p) for u, p in patches.items()]})


def _patch(app: EmulatorApp, req: Request, item_uuid: str, patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request(f"The patch of item {item_uuid} must be an object.")
    item = app.state.update_item(
        item_uuid,
        visible_to=req.caller.project_hashes,
        name=patch.get("name"),
        description=patch.get("description"),
        client_metadata=patch.get("clientMetadata", patch.get("client_metadata")),
    )
    return render.storage_item(item, app.links, sign=False)
