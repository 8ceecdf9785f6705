"""The emulator's one routing table: every route, its kind and its handler (moto's ``urls.py``).

A route's name (``GET /v2/public/projects/{project_hash}``) is what counters and fault rules use;
RPC calls are named by their call (``RPC labelrow.GET``) instead of ``POST /public``.
"""

from __future__ import annotations

from infra.emulator import blobs, control, rest, rpc
from infra.emulator.routing import RouteTable, route

_STAGE = "/v2/public/projects/{project_hash}/workflow/stages/{stage_uuid}"

ROUTES = RouteTable(
    [
        # REST, signed with the caller's key
        route("rest", "GET", "/v2/public/projects/{project_hash}", rest.get_project),
        route("rest", "GET", "/v2/public/ontologies/{ontology_hash}", rest.get_ontology),
        route(
            "rest", "GET", "/v2/public/projects/{project_hash}/datasets", rest.list_project_datasets
        ),
        route("rest", "GET", f"{_STAGE}/tasks", rest.list_tasks),
        route("rest", "POST", f"{_STAGE}/actions", rest.stage_actions),
        route("rest", "POST", f"{_STAGE}/move-tasks", rest.move_tasks),
        route("rest", "GET", f"{_STAGE}/tasks/{{task_uuid}}/reviews", rest.list_reviews),
        route("rest", "POST", "/v2/public/projects/{project_hash}/priorities", rest.set_priorities),
        route("rest", "POST", "/v2/public/storage/items/get-bulk", rest.get_items_bulk),
        route("rest", "GET", "/v2/public/storage/items/{item_uuid}", rest.get_item),
        route(
            "rest",
            "GET",
            "/v2/public/storage/folders/{folder_uuid}/items/{item_uuid}/child-items",
            rest.get_child_items,
        ),
        route(
            "rest",
            "PATCH",
            "/v2/public/storage/folders/{folder_uuid}/items/{item_uuid}",
            rest.patch_item,
        ),
        route("rest", "PATCH", "/v2/public/storage/items/patch-bulk", rest.patch_items_bulk),
        # RPC, signed, the call named in the body
        route("rpc", "POST", "/public", rpc.dispatch),
        # Media behind signed URLs
        route("media", "GET", "/blobs/{blob_id}", blobs.get_blob),
        route("media", "HEAD", "/blobs/{blob_id}", blobs.get_blob),
        # Control: loopback only, unsigned, uncounted
        route("control", "GET", "/_emulator/counters", control.get_counters),
        route("control", "DELETE", "/_emulator/counters", control.reset_counters),
        route("control", "GET", "/_emulator/faults", control.get_faults),
        route("control", "POST", "/_emulator/faults", control.add_faults),
        route("control", "DELETE", "/_emulator/faults", control.clear_faults),
        route("control", "GET", "/_emulator/projects", control.get_projects),
        route("control", "GET", "/_emulator/info", control.get_info),
        route("control", "POST", "/_emulator/seed", control.seed),
        route("control", "POST", "/_emulator/keys", control.register_key),
        route("control", "GET", "/_emulator/tasks/{task_uuid}", control.get_task),
    ]
)
