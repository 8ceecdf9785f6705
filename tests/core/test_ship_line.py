"""The package line is the ship line: agent_core and handlers never import infra (nor agent_core
handlers), so what ships to Lambda is exactly what the package line says (docs/ARCHITECTURE.md).

Two checks, because they catch different things:
- every module of agent_core and handlers imports in a fresh interpreter where infra (and, for
  agent_core, handlers) cannot be imported: catches module-level imports, however indirect;
- no import statement anywhere in their source names a forbidden package: catches the imports
  written inside functions or under TYPE_CHECKING, which the first check never executes.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each shipped package must not import: infra is the dev tree; handlers are entry points.
FORBIDDEN = {"agent_core": ("infra", "handlers"), "handlers": ("infra",)}

IMPORT_ALL = """
import importlib, importlib.abc, json, pkgutil, sys

blocked = set()
offences = []


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in blocked:
            return None
        # Name the module whose code asked for it: the nearest shipped frame on the stack. An
        # entry point (agent_core/cli.py's command plugins) is loaded by importlib.metadata on the
        # word of the installed package's metadata, not named by shipped code: not an offence.
        frame = sys._getframe(1)
        while frame is not None:
            importer = frame.f_globals.get("__name__", "")
            if importer == "importlib.metadata":
                break
            if importer.partition(".")[0] in ("agent_core", "handlers"):
                offences.append(f"{importer} (line {frame.f_lineno}) imports {name}")
                break
            frame = frame.f_back
        raise ModuleNotFoundError(f"{name} is not importable here (ship-line test)", name=top)


sys.meta_path.insert(0, Blocker())
failures = []
for package, forbidden in json.loads(sys.argv[1]).items():
    blocked.clear()
    blocked.update(forbidden)
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
print(json.dumps({"offences": list(dict.fromkeys(offences)), "failures": failures}))
"""


def test_every_shipped_module_imports_without_infra() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1"}
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, json.dumps(FORBIDDEN)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["offences"] == [], "shipped code imports the dev tree:\n" + "\n".join(
        report["offences"]
    )
    assert report["failures"] == [], "\n".join(report["failures"])


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_statement_crosses_the_line(package: str) -> None:
    offences = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in _imported_names(ast.parse(path.read_text(), str(path))):
            if name.partition(".")[0] in FORBIDDEN[package]:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert offences == [], "shipped code imports the dev tree:\n" + "\n".join(offences)


def test_agentkit_lists_the_local_commands_through_the_entry_point() -> None:
    # The operator commands are agent_core's; the local ones come from infra's entry point, which
    # an install made before it was declared lacks (`bash scripts/setup` re-installs).
    completed = subprocess.run(
        [sys.executable, "-m", "agent_core.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    listed = {line.split()[0] for line in completed.stdout.splitlines() if line.startswith("  ")}
    missing = {"produce", "dlq", "status", "demo", "poll", "events", "bench", "emulator"} - listed
    assert not missing, f"agentkit lacks {sorted(missing)}: run `bash scripts/setup`"
