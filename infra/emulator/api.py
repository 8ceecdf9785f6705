"""The HTTP layer: routes, request parsing, response rendering, auth and fault hooks.

Nothing here holds platform state; it parses a request, calls ``EmulatorState`` and renders the
result the way the SDK expects (camelCase JSON for REST, the legacy envelope with snake_case rows
for RPC). Route names (``GET /v2/public/projects/{project_hash}``, ``RPC labelrow.GET``,
``GET /blobs/{blob_id}``) are what the counters and fault rules use.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infra.emulator.auth import KeyRegistry, RegisteredKey, verify_rest, verify_rpc
from infra.emulator.counters import Counters
from infra.emulator.errors import ApiError, bad_request, forbidden
from infra.emulator.faults import FaultRule, Faults
from infra.emulator.media import (
    ITEM_TYPES,
    LABEL_DATA_TYPES,
    VIDEO_KINDS,
    MediaSpec,
    MediaStore,
    parse_range,
)
from infra.emulator.state import (
    DataUnit,
    EmulatorState,
    LabelRow,
    LabelRowFilter,
    StorageItem,
    Task,
    TaskFilter,
    annotation_task_status,
    ids,
)

LONG_FORMAT = "%a, %d %b %Y %H:%M:%S UTC"
MAX_BODY_BYTES = 64 * 1024 * 1024


def iso(value: datetime) -> str:
    return value.isoformat()


def long_string(value: datetime | None) -> str | None:
    return value.strftime(LONG_FORMAT) if value is not None else None


@dataclass
class Request:
    method: str
    target: str  # raw request target, undecoded, as the client sent it
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    key: RegisteredKey | None = None

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise bad_request("The request body is not valid JSON.") from None

    def q_list(self, name: str) -> list[str] | None:
        values = self.query.get(name)
        return list(values) if values else None

    def q_one(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def q_bool(self, name: str) -> bool:
        return (self.q_one(name) or "").lower() in ("true", "1")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload).encode())


Handler = Callable[["EmulatorApi", Request], Response]


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    regex: re.Pattern[str]

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}$")


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append(Route(method, template, fn, _compile(template)))
        return fn

    return register


RpcHandler = Callable[["EmulatorApi", Request, str, Any, Any], Any]
RPC_HANDLERS: dict[str, RpcHandler] = {}


def rpc(name: str) -> Callable[[RpcHandler], RpcHandler]:
    def register(fn: RpcHandler) -> RpcHandler:
        RPC_HANDLERS[name] = fn
        return fn

    return register


class EmulatorApi:
    """Dispatches one parsed request; shared by all server threads."""

    def __init__(
        self,
        state: EmulatorState,
        keys: KeyRegistry,
        counters: Counters,
        faults: Faults,
        media: MediaStore,
        *,
        control: ControlHooks | None = None,
    ) -> None:
        self.state = state
        self.keys = keys
        self.counters = counters
        self.faults = faults
        self.media = media
        self.domain = ""  # set once the server has its port
        self.control = control
        self._warned: set[str] = set()

    # -- entry point ---------------------------------------------------------------------
    def route_name(self, method: str, path: str, body: bytes) -> tuple[str, Route | None]:
        if method == "POST" and path == "/public":
            return f"RPC {_rpc_name(body)}", None
        for candidate in ROUTES:
            if candidate.method == method and candidate.regex.match(path):
                return candidate.name, candidate
        return f"UNMATCHED {method} {path}", None

    def dispatch(self, req: Request, route_: Route | None, name: str) -> Response:
        try:
            if name.startswith("RPC "):
                return self._rpc(req)
            if route_ is None:
                self._warn_once(name)
                return Response.json(
                    {"message": f"The emulator has no route {req.method} {req.path}."}, 404
                )
            match = route_.regex.match(req.path)
            assert match is not None
            req.params = {
                k: v.lower() if k.endswith(("hash", "uuid")) else v
                for k, v in match.groupdict().items()
            }
            if route_.template.startswith("/v2/public/"):
                req.key = verify_rest(
                    self.keys,
                    method=req.method,
                    target=req.target,
                    headers=req.headers,
                    body=req.body,
                )
            return route_.handler(self, req)
        except ApiError as exc:
            if req.path.startswith("/blobs/"):
                return Response(exc.status, exc.message.encode(), "text/plain")
            return Response.json({"message": exc.message}, exc.status)

    def _warn_once(self, name: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            print(f"encord emulator: no route for {name}", file=sys.stderr)

    # -- helpers used by handlers -------------------------------------------------------------
    def require_project(self, req: Request, project_hash: str) -> None:
        assert req.key is not None
        project_hash = project_hash.lower()
        if project_hash not in self.state.projects or not req.key.allows(project_hash):
            raise forbidden(f"You are not authorised to access project {project_hash}.")

    def require_item(self, req: Request, item_uuid: str) -> StorageItem:
        assert req.key is not None
        item = self.state.storage_item(item_uuid)
        projects = self.state.item_projects.get(item.uuid, set())
        if req.key.project_hashes is not None and not (projects & req.key.project_hashes):
            raise forbidden(f"Storage item {item_uuid} does not exist or you have no access to it.")
        return item

    def item_url(self, item: StorageItem) -> str:
        # The unsigned storage location, as the platform reports it; not downloadable by itself.
        return f"emulator-storage://{item.folder_uuid}/{item.uuid}"

    def signed_url(self, item: StorageItem) -> str:
        return self.media.sign(self.domain, item.uuid)

    # -- RPC ----------------------------------------------------------------------------------
    def _rpc(self, req: Request) -> Response:
        try:
            req.key = verify_rpc(self.keys, headers=req.headers, body=req.body)
            body = req.json()
            if not isinstance(body, dict):
                raise bad_request("The RPC body must be an object.")
            query_type = str(body.get("query_type", "")).lower()
            method = str(body.get("query_method", "")).upper()
            values = body.get("values") or {}
            handler = RPC_HANDLERS.get(f"{query_type}.{method}")
            if handler is None:
                self._warn_once(f"RPC {query_type}.{method}")
                return Response.json(
                    {
                        "status": 400,
                        "response": ["EMULATOR_NOT_IMPLEMENTED"],
                        "payload": f"The emulator does not implement {query_type}.{method}.",
                    }
                )
            resource_type = req.headers.get("ResourceType", "")
            resource_id = req.headers.get("ResourceID", "").lower()
            if resource_type != "project" or not resource_id:
                raise bad_request(
                    f"{query_type}.{method} needs ResourceType project and a ResourceID."
                )
            if resource_id not in self.state.projects or not req.key.allows(resource_id):
                raise forbidden(f"You are not authorised to access project {resource_id}.")
            result = handler(self, req, resource_id, values.get("uid"), values.get("payload") or {})
            return Response.json({"status": 200, "response": result})
        except ApiError as exc:
            return Response.json(
                {"status": exc.status, "response": [exc.rpc_code], "payload": exc.message}
            )

    # -- rendering ----------------------------------------------------------------------------
    def render_task(self, task: Task) -> dict[str, Any]:
        unit = self.state.data_units[task.data_hash]
        return {
            "uuid": task.uuid,
            "createdAt": iso(task.created_at),
            "updatedAt": iso(task.updated_at),
            "status": task.status,
            "dataHash": task.data_hash,
            "dataTitle": unit.title,
            "labelBranchName": task.branch_name,
            "assignee": task.assignee,
            "lastActionedBy": task.last_actioned_by,
            "priority": task.priority,
        }

    def render_item(self, item: StorageItem, sign: bool) -> dict[str, Any]:
        media = item.media
        is_group = media.kind == "image_group"
        is_video = media.kind in VIDEO_KINDS
        audio = media.kind == "audio"
        return {
            "uuid": item.uuid,
            "parent": item.folder_uuid,
            "itemType": ITEM_TYPES[media.kind],
            "name": item.name,
            "description": item.description,
            "clientMetadata": json.dumps(item.client_metadata),
            "owner": "emulator@agentkit.local",
            "createdAt": iso(item.created_at),
            "lastEditedAt": iso(item.last_edited_at),
            "isTombstone": False,
            "isPlaceholder": False,
            "backedDataUnitsCount": 1,
            "storageLocation": "encord",
            "integrationHash": None,
            "url": None if is_group else self.item_url(item),
            "signedUrl": self.signed_url(item) if sign and not is_group else None,
            "fileSize": None,
            "mimeType": None if is_group else media.mime,
            "duration": media.duration,
            "fps": media.fps if is_video else None,
            "height": None if audio or media.kind == "text" else media.height,
            "width": None if audio or media.kind == "text" else media.width,
            "dicomInstanceUid": None,
            "dicomStudyUid": None,
            "dicomSeriesUid": None,
            "frameCount": media.frames if is_video or is_group else None,
            **_AUDIO_ITEM_FIELDS[audio],
        }

    def render_label_row_metadata(
        self,
        project_hash: str,
        unit: DataUnit,
        task: Task,
        row: LabelRow | None,
        payload: dict[str, Any],
    ) -> dict[str, Any]:
        project = self.state.projects[project_hash]
        dataset = self.state.datasets[unit.dataset_hash]
        item = self.state.items[unit.item_uuid]
        media = item.media
        stage = project.workflow.stage(task.stage_uuid)
        assert stage is not None
        result: dict[str, Any] = {
            "label_hash": row.label_hash if row else None,
            "created_at": long_string(row.created_at) if row else None,
            "last_edited_at": long_string(row.last_edited_at) if row else None,
            "branch_name": row.branch_name
            if row
            else payload.get("branch_name") or task.branch_name,
            "data_hash": unit.data_hash,
            "dataset_hash": unit.dataset_hash,
            "dataset_title": dataset.title,
            "data_title": unit.title,
            "data_type": LABEL_DATA_TYPES[media.kind].upper(),
            "data_link": None if media.kind == "image_group" else self.item_url(item),
            "label_status": row.label_status if row else "NOT_LABELLED",
            "annotation_task_status": annotation_task_status(stage),
            "is_shadow_data": False,
            "number_of_frames": media.frames,
            "duration": media.duration,
            "frames_per_second": media.fps if media.kind in VIDEO_KINDS else None,
            "height": media.height,
            "width": media.width,
            **(_audio_unit_fields(media) if media.kind == "audio" else {}),
            "spaces": {},
            "task_uuid": task.uuid,
            "priority": task.priority,
            "file_type": media.mime,
            "is_valid": True,
            "backing_item_uuid": item.uuid,
            "assigned_user_email": task.assignee,
            "last_actioned_by_user_email": task.last_actioned_by,
        }
        if payload.get("include_workflow_graph_node", True):
            result["workflow_graph_node"] = {"uuid": stage.uuid, "title": stage.title}
        if payload.get("include_client_metadata"):
            if payload.get("client_metadata_as_signed_url"):
                result["client_metadata"] = None
                result["client_metadata_signed_url"] = self.media.sign(
                    self.domain, f"cm-{item.uuid}"
                )
            else:
                result["client_metadata"] = dict(item.client_metadata)
        if payload.get("include_images_data"):
            result["images_data"] = None
        return result

    def _render_data_units(
        self, unit: DataUnit, item: StorageItem, labels: dict[str, Any], sign: bool
    ) -> dict[str, Any]:
        """The label row's ``data_units``: one per image of an image group, else one."""
        media = item.media
        if media.kind == "image_group":
            units: dict[str, Any] = {}
            for index, child_uuid in enumerate(item.children):
                child = self.state.items[child_uuid]
                units[child_uuid] = {
                    "data_hash": child_uuid,
                    "data_title": child.name,
                    "data_type": child.media.mime,
                    "data_sequence": str(index),
                    "data_link": self.signed_url(child) if sign else self.item_url(child),
                    "width": child.media.width,
                    "height": child.media.height,
                    "labels": labels.get(child_uuid, {}),
                }
            return units
        data_unit: dict[str, Any] = {
            "data_hash": unit.data_hash,
            "data_title": unit.title,
            "data_type": media.mime,
            "data_sequence": 0,
            "data_link": self.signed_url(item) if sign else self.item_url(item),
            "labels": labels,
        }
        if media.kind in ("image", *VIDEO_KINDS):
            data_unit["width"] = media.width
            data_unit["height"] = media.height
        if media.kind in VIDEO_KINDS:
            data_unit["data_fps"] = media.fps
            data_unit["data_duration"] = media.duration
        if media.kind == "audio":
            data_unit.update(_audio_unit_fields(media))
            data_unit["data_duration"] = media.duration
        return {unit.data_hash: data_unit}

    def render_label_row(
        self,
        project_hash: str,
        unit: DataUnit,
        task: Task,
        row: LabelRow,
        payload: dict[str, Any],
    ) -> dict[str, Any]:
        project = self.state.projects[project_hash]
        dataset = self.state.datasets[unit.dataset_hash]
        item = self.state.items[unit.item_uuid]
        media = item.media
        stage = project.workflow.stage(task.stage_uuid)
        assert stage is not None
        sign = bool(payload.get("get_signed_url"))
        object_filter = payload.get("include_object_feature_hashes")
        class_filter = payload.get("include_classification_feature_hashes")
        kind = "frames" if media.has_frames else "image"
        labels = _filter_unit_labels(row.unit_labels, kind, object_filter, class_filter)
        object_answers = row.object_answers
        classification_answers = row.classification_answers
        if object_filter is not None:
            kept = _object_hashes(labels, kind)
            object_answers = {k: v for k, v in object_answers.items() if k in kept}
        if class_filter is not None:
            classification_answers = {
                k: v
                for k, v in classification_answers.items()
                if v.get("featureHash") in set(class_filter)
            }
        data_units = self._render_data_units(unit, item, labels, sign)
        return {
            "label_hash": row.label_hash,
            "branch_name": row.branch_name,
            "created_at": long_string(row.created_at),
            "last_edited_at": long_string(row.last_edited_at),
            "dataset_hash": unit.dataset_hash,
            "dataset_title": dataset.title,
            "data_title": unit.title,
            "data_hash": unit.data_hash,
            "data_type": LABEL_DATA_TYPES[media.kind],
            "data_units": data_units,
            "object_answers": object_answers,
            "classification_answers": classification_answers,
            "object_actions": row.object_actions,
            "label_status": row.label_status,
            "annotation_task_status": annotation_task_status(stage),
            "is_valid": True,
            "spaces": {},
            "workflow_graph_node": {"uuid": stage.uuid, "title": stage.title},
            "task_uuid": task.uuid,
            "priority": task.priority,
        }


def _audio_unit_fields(media: MediaSpec) -> dict[str, Any]:
    return {
        "audio_codec": "mp3",
        "audio_sample_rate": 44100,
        "audio_bit_depth": 16,
        "audio_num_channels": 1,
    }


# The audio properties of a storage item: set for audio, None otherwise.
_AUDIO_ITEM_FIELDS: dict[bool, dict[str, Any]] = {
    True: {
        "audioSampleRate": 44100,
        "audioBitDepth": 16,
        "audioCodec": "mp3",
        "audioNumChannels": 1,
    },
    False: {
        "audioSampleRate": None,
        "audioBitDepth": None,
        "audioCodec": None,
        "audioNumChannels": None,
    },
}


def _filter_unit_labels(
    labels: dict[str, Any], kind: str, objects: list[str] | None, classifications: list[str] | None
) -> dict[str, Any]:
    def keep(frame: dict[str, Any]) -> dict[str, Any]:
        result = dict(frame)
        if objects is not None:
            result["objects"] = [
                o for o in frame.get("objects", []) if o.get("featureHash") in objects
            ]
        if classifications is not None:
            result["classifications"] = [
                c
                for c in frame.get("classifications", [])
                if c.get("featureHash") in classifications
            ]
        return result

    if objects is None and classifications is None:
        return labels
    if kind == "image":
        return keep(labels)
    return {frame: keep(value) for frame, value in labels.items()}


def _object_hashes(labels: dict[str, Any], kind: str) -> set[str]:
    frames = [labels] if kind == "image" else list(labels.values())
    return {o.get("objectHash") for f in frames for o in f.get("objects", [])}


def _rpc_name(body: bytes) -> str:
    try:
        data = json.loads(body)
        return f"{str(data.get('query_type', '?')).lower()}.{str(data.get('query_method', '?')).upper()}"
    except (ValueError, AttributeError):
        return "invalid"


def _actor(req: Request) -> str:
    assert req.key is not None
    return f"{req.key.name}@emulator"


# =============================================================================================
# REST routes
# =============================================================================================
@route("GET", "/v2/public/projects/{project_hash}")
def get_project(api: EmulatorApi, req: Request) -> Response:
    project_hash = req.params["project_hash"]
    api.require_project(req, project_hash)
    with api.state.lock:
        project = api.state.projects[project_hash]
        ontology = api.state.ontologies[project.ontology_hash]
        stages = []
        for stage in project.workflow.stages:
            rendered: dict[str, Any] = {
                "stageType": stage.stage_type,
                "uuid": stage.uuid,
                "title": stage.title,
            }
            if stage.stage_type == "AGENT":
                rendered["pathways"] = [
                    {"uuid": p.uuid, "title": p.name, "destinationUuid": p.destination_uuid}
                    for p in stage.pathways
                ]
            stages.append(rendered)
        return Response.json(
            {
                "projectHash": project.project_hash,
                "projectType": "workflow",
                "status": "inProgress",
                "title": project.title,
                "description": project.description,
                "createdAt": iso(project.created_at),
                "creatorEmail": "emulator@agentkit.local",
                "lastEditedAt": iso(project.last_edited_at),
                "ontologyHash": project.ontology_hash,
                "editorOntology": ontology.structure,
                "userRole": 0,
                "sourceProjects": None,
                "workflowManagerUuid": project.workflow.uuid,
                "workflow": {"stages": stages},
            }
        )


@route("GET", "/v2/public/ontologies/{ontology_hash}")
def get_ontology(api: EmulatorApi, req: Request) -> Response:
    assert req.key is not None
    ontology_hash = req.params["ontology_hash"]
    with api.state.lock:
        ontology = api.state.ontologies.get(ontology_hash)
        users = {
            p.project_hash for p in api.state.projects.values() if p.ontology_hash == ontology_hash
        }
    if ontology is None or not any(req.key.allows(p) for p in users):
        raise forbidden(f"Ontology {ontology_hash} does not exist or you have no access to it.")
    return Response.json(
        {
            "ontologyUuid": ontology.ontology_hash,
            "title": ontology.title,
            "description": ontology.description,
            "editor": ontology.structure,
            "createdAt": iso(ontology.created_at),
            "lastEditedAt": iso(ontology.last_edited_at),
            "userRole": 0,
        }
    )


@route("GET", "/v2/public/projects/{project_hash}/datasets")
def list_project_datasets(api: EmulatorApi, req: Request) -> Response:
    project_hash = req.params["project_hash"]
    api.require_project(req, project_hash)
    with api.state.lock:
        project = api.state.projects[project_hash]
        results = [
            {"datasetHash": d.dataset_hash, "title": d.title, "description": d.description}
            for d in (api.state.datasets[h] for h in project.dataset_hashes)
        ]
    return Response.json({"results": results})


@route("GET", "/v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/tasks")
def list_tasks(api: EmulatorApi, req: Request) -> Response:
    project_hash = req.params["project_hash"]
    api.require_project(req, project_hash)
    flt = TaskFilter(
        data_hashes=ids(req.q_list("dataHashes")),
        dataset_hashes=ids(req.q_list("datasetHashes")),
        user_emails=set(req.q_list("userEmails") or []) or None,
        statuses=set(req.q_list("statuses") or []) or None,
        data_title_contains=req.q_one("dataTitleContains"),
    )
    tasks, token = api.state.list_tasks(
        project_hash, req.params["stage_uuid"], flt, req.q_one("pageToken")
    )
    with api.state.lock:
        results = [api.render_task(t) for t in tasks]
    return Response.json({"results": results, "nextPageToken": token})


@route("POST", "/v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/actions")
def stage_actions(api: EmulatorApi, req: Request) -> Response:
    project_hash = req.params["project_hash"]
    api.require_project(req, project_hash)
    actions = req.json()
    if not isinstance(actions, list):
        raise bad_request("The body must be a list of actions.")
    api.state.apply_actions(project_hash, req.params["stage_uuid"], actions, _actor(req))
    return Response.json(None)


@route("POST", "/v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/move-tasks")
def move_tasks(api: EmulatorApi, req: Request) -> Response:
    project_hash = req.params["project_hash"]
    api.require_project(req, project_hash)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("taskUuids"), list):
        raise bad_request("The body must be {taskUuids: [...], destinationStageUuid}.")
    api.state.move_tasks(
        project_hash,
        req.params["stage_uuid"],
        str(body.get("destinationStageUuid", "")),
        body["taskUuids"],
        _actor(req),
    )
    return Response.json(None)


@route(
    "GET",
    "/v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}/tasks/{task_uuid}/reviews",
)
def list_reviews(api: EmulatorApi, req: Request) -> Response:
    api.require_project(req, req.params["project_hash"])
    return Response.json({"results": [], "nextPageToken": None})


@route("POST", "/v2/public/projects/{project_hash}/priorities")
def set_priorities(api: EmulatorApi, req: Request) -> Response:
    project_hash = req.params["project_hash"]
    api.require_project(req, project_hash)
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("priorities"), list):
        raise bad_request("The body must be {priorities: [[data_hash, priority], ...]}.")
    api.state.set_priorities(project_hash, body["priorities"])
    return Response.json(None)


@route("POST", "/v2/public/storage/items/get-bulk")
def get_items_bulk(api: EmulatorApi, req: Request) -> Response:
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("itemUuids"), list):
        raise bad_request("The body must be {itemUuids: [...], signUrls}.")
    sign = bool(body.get("signUrls"))
    with api.state.lock:
        items = [api.require_item(req, str(u)) for u in body["itemUuids"]]
        return Response.json({"results": [api.render_item(i, sign) for i in items]})


@route("GET", "/v2/public/storage/items/{item_uuid}")
def get_item(api: EmulatorApi, req: Request) -> Response:
    with api.state.lock:
        item = api.require_item(req, req.params["item_uuid"])
        return Response.json(api.render_item(item, req.q_bool("signUrl")))


@route("GET", "/v2/public/storage/folders/{folder_uuid}/items/{item_uuid}/child-items")
def get_child_items(api: EmulatorApi, req: Request) -> Response:
    with api.state.lock:
        item = api.require_item(req, req.params["item_uuid"])
        if item.folder_uuid != req.params["folder_uuid"]:
            raise ApiError(404, f"Item {item.uuid} is not in folder {req.params['folder_uuid']}.")
        sign = req.q_bool("signUrls")
        children = [api.render_item(api.state.items[c], sign) for c in item.children]
        return Response.json({"results": children, "nextPageToken": None})


def _patch(api: EmulatorApi, req: Request, item_uuid: str, patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request(f"The patch of item {item_uuid} must be an object.")
    api.require_item(req, item_uuid)
    item = api.state.update_item(
        item_uuid,
        name=patch.get("name"),
        description=patch.get("description"),
        client_metadata=patch.get("clientMetadata", patch.get("client_metadata")),
    )
    return api.render_item(item, sign=False)


@route("PATCH", "/v2/public/storage/folders/{folder_uuid}/items/{item_uuid}")
def patch_item(api: EmulatorApi, req: Request) -> Response:
    item_uuid = req.params["item_uuid"]
    with api.state.lock:
        item = api.require_item(req, item_uuid)
        if item.folder_uuid != req.params["folder_uuid"]:
            raise ApiError(404, f"Item {item_uuid} is not in folder {req.params['folder_uuid']}.")
        return Response.json(_patch(api, req, item_uuid, req.json()))


@route("PATCH", "/v2/public/storage/items/patch-bulk")
def patch_items_bulk(api: EmulatorApi, req: Request) -> Response:
    body = req.json()
    patches = body.get("itemPatches") if isinstance(body, dict) else None
    if not isinstance(patches, dict):
        raise bad_request("The body must be {itemPatches: {item_uuid: patch}}.")
    with api.state.lock:
        for item_uuid in patches:
            api.require_item(req, item_uuid)
        return Response.json({"results": [_patch(api, req, u, p) for u, p in patches.items()]})


# =============================================================================================
# Media
# =============================================================================================
def _blob(api: EmulatorApi, req: Request, head: bool) -> Response:
    blob_id = req.params["blob_id"]
    api.media.check_signature(blob_id, req.q_one("expires"), req.q_one("sig"))
    data, mime = api.media.content(blob_id)
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=0"}
    status = 200
    try:
        byte_range = parse_range(req.headers.get("Range"), len(data))
    except ApiError:
        return Response(416, b"", mime, {"Content-Range": f"bytes */{len(data)}"})
    if byte_range is not None:
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        data = data[start : end + 1]
        status = 206
    if head:
        headers["Content-Length"] = str(len(data))
        return Response(status, b"", mime, headers)
    return Response(status, data, mime, headers)


@route("GET", "/blobs/{blob_id}")
def get_blob(api: EmulatorApi, req: Request) -> Response:
    return _blob(api, req, head=False)


@route("HEAD", "/blobs/{blob_id}")
def head_blob(api: EmulatorApi, req: Request) -> Response:
    return _blob(api, req, head=True)


# =============================================================================================
# RPC (POST /public)
# =============================================================================================
def _uid_list(uid: Any, what: str) -> list[str]:
    if isinstance(uid, str):
        return [uid]
    if not isinstance(uid, list) or not all(isinstance(u, str) for u in uid):
        raise bad_request(f"uid must be a list of {what}.")
    return list(uid)


@rpc("labelrowmetadata.GET")
def rpc_list_label_rows(
    api: EmulatorApi, req: Request, project_hash: str, uid: Any, payload: Any
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
    rows = api.state.label_row_rows(project_hash, flt)
    if not payload.get("include_uninitialised_labels", False):
        rows = [r for r in rows if r[2] is not None]
    with api.state.lock:
        return [api.render_label_row_metadata(project_hash, u, t, r, payload) for u, t, r in rows]


@rpc("labelrow.GET")
def rpc_get_label_rows(
    api: EmulatorApi, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    rows = api.state.rows_by_label_hash(project_hash, _uid_list(uid, "label hashes"))
    with api.state.lock:
        return [api.render_label_row(project_hash, u, t, r, payload) for u, t, r in rows]


@rpc("labelrow.PUT")
def rpc_create_label_rows(
    api: EmulatorApi, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    rows = api.state.create_label_rows(
        project_hash, _uid_list(uid, "data hashes"), payload.get("branch_name")
    )
    with api.state.lock:
        return [api.render_label_row(project_hash, u, t, r, payload) for u, t, r in rows]


@rpc("labelrow.POST")
def rpc_save_label_rows(
    api: EmulatorApi, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    label_hashes = _uid_list(uid, "label hashes")
    labels = payload.get("labels")
    if not payload.get("multi_request"):
        labels = [payload]
    if not isinstance(labels, list):
        raise bad_request("payload.labels must be a list of label rows.")
    api.state.save_label_rows(project_hash, label_hashes, labels)
    return True


@rpc("labelworkflowgraphnode.POST")
def rpc_workflow_node(
    api: EmulatorApi, req: Request, project_hash: str, uid: Any, payload: Any
) -> Any:
    api.state.workflow_jump(
        project_hash, _uid_list(uid, "label hashes"), str(payload.get("action")), _actor(req)
    )
    return True


# =============================================================================================
# Control endpoints (/_emulator/...): unsigned, uncounted, loopback only
# =============================================================================================
class ControlHooks:
    """What the control endpoints need from the Emulator object (seeding, key registration)."""

    def __init__(
        self,
        seed: Callable[[Any], dict[str, Any]],
        register_key: Callable[[list[str] | None], tuple[str, str]],
        info: Callable[[], dict[str, Any]],
    ) -> None:
        self.seed = seed
        self.register_key = register_key
        self.info = info


def handle_control(api: EmulatorApi, req: Request) -> Response:
    path = req.path.rstrip("/")
    try:
        if path == "/_emulator/counters":
            if req.method == "GET":
                return Response.json(
                    {
                        "counters": api.counters.snapshot(),
                        "encord_total": api.counters.encord_total(),
                        "media_total": api.counters.media_total(),
                        "injected": api.counters.injected(),
                    }
                )
            if req.method == "DELETE":
                api.counters.reset()
                return Response(204)
        elif path == "/_emulator/faults":
            if req.method == "GET":
                return Response.json([r.to_dict() for r in api.faults.rules()])
            if req.method == "POST":
                body = req.json()
                rules = body if isinstance(body, list) else [body]
                if not all(isinstance(r, dict) for r in rules):
                    raise bad_request("POST a FaultRule object or a list of them.")
                added = [api.faults.add(FaultRule.from_dict(r)).to_dict() for r in rules]
                return Response.json(added)
            if req.method == "DELETE":
                api.faults.clear()
                return Response(204)
        elif path == "/_emulator/projects" and req.method == "GET":
            return Response.json(api.state.snapshot_summary())
        elif path == "/_emulator/info" and req.method == "GET" and api.control:
            return Response.json(api.control.info())
        elif path == "/_emulator/seed" and req.method == "POST" and api.control:
            body = req.json()
            fixture = body.get("fixture") if isinstance(body, dict) else None
            if fixture is None:
                raise bad_request('POST {"fixture": "basic" | "demo" | <path> | <spec object>}.')
            try:
                return Response.json(api.control.seed(fixture))
            except ValueError as exc:
                raise bad_request(str(exc)) from None
        elif path == "/_emulator/keys" and req.method == "POST" and api.control:
            body = req.json() or {}
            hashes = body.get("project_hashes") if isinstance(body, dict) else None
            text, key_path = api.control.register_key(hashes)
            return Response.json({"ssh_private_key": text, "ssh_key_path": key_path})
        elif path.startswith("/_emulator/tasks/") and req.method == "GET":
            task_uuid = path.rsplit("/", 1)[-1]
            try:
                task = api.state.task(task_uuid)
                stage = api.state.task_stage(task_uuid)
            except KeyError:
                raise ApiError(404, f"No task {task_uuid}.") from None
            return Response.json(
                {
                    "uuid": task.uuid,
                    "project_hash": task.project_hash,
                    "data_hash": task.data_hash,
                    "stage": {"uuid": stage.uuid, "title": stage.title},
                    "status": task.status,
                    "priority": task.priority,
                    "history": [
                        {
                            "action": e.action,
                            "at": iso(e.at),
                            "from_stage": e.from_stage_title,
                            "to_stage": e.to_stage_title,
                            "pathway": e.pathway_name,
                            "pathway_uuid": e.pathway_uuid,
                            "actor": e.actor,
                        }
                        for e in task.history
                    ],
                }
            )
        raise ApiError(404, f"No control endpoint {req.method} {path}.")
    except ApiError as exc:
        return Response.json({"message": exc.message}, exc.status)


# =============================================================================================
# The server
# =============================================================================================
class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], api: EmulatorApi, *, quiet: bool = True) -> None:
        self.api = api
        self.quiet = quiet
        super().__init__(address, EmulatorRequestHandler)


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer
    # Idle keep-alive connections must not pin a thread forever.
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"emulator {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "Request body too large.")
        return self.rfile.read(size)

    def _handle(self) -> None:
        api = self.server.api
        try:
            body = self._read_body()
        except (ValueError, ApiError):
            self._send(Response.json({"message": "Bad or too large Content-Length."}, 413))
            return
        split = urlsplit(self.path)
        req = Request(
            method=self.command,
            target=self.path,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k: v for k, v in self.headers.items()},
            body=body,
        )
        if split.path.startswith("/_emulator"):
            if self.client_address[0] not in ("127.0.0.1", "::1"):
                self._send(Response.json({"message": "Control endpoints are loopback-only."}, 403))
                return
            self._send(handle_control(api, req))
            return

        name, matched = api.route_name(req.method, req.path, body)
        api.counters.incr(name)
        decision = api.faults.decide(name)
        if decision.delay_s > 0:
            time.sleep(decision.delay_s)
        if decision.action == "drop":
            api.counters.incr_injected(name, "drop")
            self._drop()
            return
        if decision.action is not None:
            api.counters.incr_injected(name, str(decision.action))
            headers = {}
            if decision.retry_after is not None and decision.action in (429, 503, 413):
                headers["Retry-After"] = str(int(decision.retry_after))
            message = HTTPStatus(decision.action).phrase
            self._send(
                Response(
                    decision.action, json.dumps({"message": message}).encode(), headers=headers
                )
            )
            return
        try:
            response = api.dispatch(req, matched, name)
        except Exception as exc:  # a bug in the emulator: answer 500 and say so on stderr
            import traceback

            traceback.print_exc()
            response = Response.json(
                {"message": f"Emulator error: {type(exc).__name__}: {exc}"}, 500
            )
        self._send(response, head=req.method == "HEAD")

    def _drop(self) -> None:
        self.close_connection = True
        # The peer may already be gone; a drop only needs the socket closed.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: Response, *, head: bool = False) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if "Content-Length" not in response.headers:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if not head and response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
