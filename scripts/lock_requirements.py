"""Writes the Lambda requirement sets (requirements/*.txt) from uv.lock, or checks they match it.

uv.lock is the one source of versions. Each set is `uv export` of the locked project with the
packages the python3.12 runtime provides left out, and every environment marker evaluated for that
runtime, so the Makefile can install the file with `pip --no-deps --platform ...` and ship exactly
the locked versions (pip would evaluate markers for the build machine, not for Lambda).

    python scripts/lock_requirements.py           # rewrite requirements/*.txt
    python scripts/lock_requirements.py --check   # exit 1 if any set differs from uv.lock
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"

# The python3.12 runtime provides these (as Powertools expects); shipping them adds ~26 MB.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
# set name -> extras exported into it, and what it is for.
SETS: dict[str, tuple[tuple[str, ...], str]] = {
    "producer": ((), "the producer function"),
    "consumer": ((), "the lean consumer (agents without numpy/OpenCV)"),
    "vision": (("vision",), "functions whose agent uses the vision dependencies"),
}
# Marker values on Lambda's python3.12 x86_64 runtime (Amazon Linux 2023).
LAMBDA_MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "implementation_version": "3.12.0",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "extra": "",
}


def uv_executable() -> str:
    """The uv that scripts/setup installed (its version is pinned in pyproject.toml)."""
    for candidate in (os.environ.get("UV"), REPO / ".tools/uv/bin/uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("uv not found: run `bash scripts/setup` first (it installs the pinned uv)")


def exported_pins(extras: tuple[str, ...]) -> list[str]:
    command = [
        uv_executable(),
        "export",
        "--frozen",
        "--no-dev",
        "--no-emit-project",
        "--no-hashes",
        "--no-header",
        "--no-annotate",
        "--format",
        "requirements.txt",
    ]
    for extra in extras:
        command += ["--extra", extra]
    for name in RUNTIME_PROVIDED:
        command += ["--no-emit-package", name]
    text = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout
    pins: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(LAMBDA_MARKERS):
            pins.append(f"{requirement.name}{requirement.specifier}")
    return sorted(pins, key=str.lower)


def render(name: str) -> str:
    extras, purpose = SETS[name]
    header = [
        f"# Lambda requirement set for {purpose}: python3.12, x86_64.",
        "# GENERATED from uv.lock by scripts/lock_requirements.py; do not edit (run `bash scripts/lock`).",
        f"# Left out because the runtime provides them: {', '.join(RUNTIME_PROVIDED)}.",
    ]
    return "\n".join([*header, *exported_pins(extras)]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a set differs from uv.lock")
    args = parser.parse_args()
    drifted = []
    for name in SETS:
        path = REQUIREMENTS / f"{name}.txt"
        wanted = render(name)
        if args.check:
            if not path.exists() or path.read_text() != wanted:
                drifted.append(path.relative_to(REPO))
        else:
            path.write_text(wanted)
    if drifted:
        print(
            f"out of date with uv.lock: {', '.join(map(str, drifted))}; run `bash scripts/lock`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
