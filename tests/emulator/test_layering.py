"""The emulator's layering: the HTTP modules reach platform state only through EmulatorState's
methods (which take the lock and return copies), and every route is in the one table."""

import ast
from pathlib import Path

import infra.emulator
from infra.emulator.urls import ROUTES

EMULATOR = Path(infra.emulator.__file__).parent
HTTP_MODULES = [
    "app",
    "blobs",
    "control",
    "render",
    "rest",
    "routing",
    "rpc",
    "server",
    "transport",
    "urls",
]
# EmulatorState's storage: only state.py (and the fixture builder, through state.project) use it.
STATE_INTERNALS = {
    "lock",
    "projects",
    "ontologies",
    "datasets",
    "data_units",
    "folders",
    "items",
    "tasks",
    "label_index",
    "item_projects",
}


def state_attributes(module: str) -> set[str]:
    """Attributes read from anything spelled ``*.state`` in a module (``app.state.lock``)."""
    tree = ast.parse((EMULATOR / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "state"
        ):
            found.add(node.attr)
    return found


def test_http_modules_use_only_state_methods() -> None:
    for module in HTTP_MODULES:
        touched = state_attributes(module) & STATE_INTERNALS
        assert not touched, f"{module}.py reads EmulatorState internals {sorted(touched)}"


def test_one_routing_table_names_every_route_once() -> None:
    keys = [(r.method, r.template) for r in ROUTES.routes]
    assert len(keys) == len(set(keys))
    assert {r.kind for r in ROUTES.routes} == {"rest", "rpc", "media", "control"}
    assert all(r.template.startswith("/v2/public/") for r in ROUTES.routes if r.kind == "rest")
    assert all(r.template.startswith("/_emulator/") for r in ROUTES.routes if r.kind == "control")
