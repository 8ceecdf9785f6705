"""Fixtures for the built-artifact tests: `sam build` once per session per variant, local stand-ins.

- ``default_build``: `sam build` as a user runs it (vision layer, numpy + OpenCV zipped).
- ``lean_build``: `LAYER_REQUIREMENTS=requirements/consumer.txt sam build` (no numpy/OpenCV).
Both install from the wheelhouse in .build/wheels (filled once by scripts/package_size.py, reused
offline afterwards), so a re-run does not touch the network. The time each build took is printed
in the session summary.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from lambda_rie import REPO, TIMINGS, require_tools, sam_build  # noqa: E402

if TYPE_CHECKING:
    from infra.localstack.moto import MotoServer


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    require_tools()
    package_size = _load_script("package_size")
    path = REPO / ".build" / "wheels"
    package_size.fill_wheelhouse(path, package_size.lambda_platforms())
    return path


def _build(name: str, wheelhouse: Path, build_root: Path, **variables: str) -> Path:
    build_dir = build_root / name
    env = {
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PIP_INSTALL_ARGS": f"--quiet --no-index --find-links {wheelhouse}",
        **variables,
    }
    TIMINGS[f"sam build ({name})"] = sam_build(build_dir, env)
    return build_dir


@pytest.fixture(scope="session")
def default_build(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("default", wheelhouse, tmp_path_factory.mktemp("sam"))


@pytest.fixture(scope="session")
def lean_build(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(
        "lean",
        wheelhouse,
        tmp_path_factory.mktemp("sam"),
        LAYER_REQUIREMENTS="requirements/consumer.txt",
    )


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from infra.localstack.moto import MotoServer

    with MotoServer.start() as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for label, seconds in TIMINGS.items():
        terminalreporter.write_line(f"lambda_runtime: {label} took {seconds:.1f} s")
