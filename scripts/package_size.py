"""Build every Lambda package variant with the Makefile and check its unpacked size.

    scripts/package-size [--json report.json] [--variant lean ...] [--build-dir DIR] [--clean]

Both functions run the same code (agent_core, handlers, agents; ~0.4 MB) on one dependencies layer
(template.yaml's DependenciesLayer), so a variant is a layer plus that code. For each variant (lean,
vision, vision-unpacked) this runs the targets `sam build` runs (`make build-DependenciesLayer` and
`make build-ConsumerFunction`, ARTIFACTS_DIR=...), adds up the unpacked size of both (what Lambda
counts against its limit, layers included) and compares it with the variant's budget and with
Lambda's 262,144,000-byte limit (AWS's "250 MB", which is 250 MiB). Budgets are exact byte counts:
the vision variant's is 200 MB = 200,000,000 bytes (decimal, the stricter reading). vision ships
numpy and OpenCV zipped (VISION_ARCHIVE=1, the Makefile's default); vision-unpacked is the
VISION_ARCHIVE=0 build.

Wheels come from a wheelhouse under .build/wheels, filled once with `pip download` and reused
while the requirement files stay the same, so a rerun is offline and quick.

When a CPython 3.12 interpreter is around (python3.12 on PATH, pyenv, or --lambda-python), each
package is also imported the way the Lambda runtime would: only the function's code, the layer and
the AWS SDK the runtime provides (boto3/botocore/s3transfer at the versions of this environment) on
sys.path, then both handlers, pydantic-core, cryptography's Rust bindings and, for the vision variants, numpy
and OpenCV (an image and a video round trip) are exercised. That proves the lock files are
complete and that pruning and stripping removed nothing needed. For the zipped vision variant the
check goes through the run-time path: the handler's import unpacks the archive (into a scratch
folder standing in for /tmp), numpy and cv2 must come from there, the unpacking time is reported,
and a second process must reuse the unpacked folder.

Exit status: 0 all within budget; 1 a budget or the Lambda limit is exceeded; 2 the build failed;
3 the wheels could not be fetched (no network and no complete wheelhouse); 4 a built package does
not import.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
MB = 1000 * 1000
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000

EXIT_OK = 0
EXIT_SIZE = 1
EXIT_BUILD = 2
EXIT_NO_WHEELS = 3
EXIT_IMPORT = 4

# Provided by the python3.12 runtime, so never shipped; the import check puts them after the package.
RUNTIME_SDK = ("boto3", "botocore", "s3transfer")

# pip's wording when it could not reach an index (as opposed to a pin that does not exist).
_NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
    r"|Name or service not known|Network is unreachable|Connection refused|ConnectTimeout"
    r"|Read timed out|ProxyError|SSLError|No route to host|nodename nor servname",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One deployable shape: the dependencies layer built from ``requirements`` plus a function's
    code. Both functions carry the same code and use the same layer, so one variant covers both."""

    name: str
    make_variables: dict[str, str]
    requirements: str
    budget_bytes: int
    vision: bool
    # numpy/OpenCV are expected zipped in the layer (VISION_ARCHIVE=1) rather than unpacked.
    archived: bool = False
    # The import check imports both handlers (the code is the same in either function).
    handler_modules: tuple[str, ...] = ("handlers.producer", "handlers.consumer")


LAYER_TARGET = "build-DependenciesLayer"
FUNCTION_TARGET = "build-ConsumerFunction"

VARIANTS: tuple[Variant, ...] = (
    Variant(
        name="lean",
        make_variables={"LAYER_REQUIREMENTS": "requirements/consumer.txt"},
        requirements="requirements/consumer.txt",
        budget_bytes=60 * MIB,
        vision=False,
    ),
    Variant(
        name="vision",
        make_variables={"LAYER_REQUIREMENTS": "requirements/vision.txt", "VISION_ARCHIVE": "1"},
        requirements="requirements/vision.txt",
        budget_bytes=200 * MB,
        vision=True,
        archived=True,
    ),
    Variant(
        name="vision-unpacked",
        make_variables={"LAYER_REQUIREMENTS": "requirements/vision.txt", "VISION_ARCHIVE": "0"},
        requirements="requirements/vision.txt",
        # The opt-out for those who prefer no unpacking step: it only has to fit Lambda's limit.
        budget_bytes=LAMBDA_UNZIPPED_LIMIT_BYTES - 1,
        vision=True,
    ),
)


def layer_site(artifacts: Path) -> Path:
    """Where a variant's layer puts its packages (Lambda: /opt/python)."""
    return artifacts / "layer" / "python"


def function_dir(artifacts: Path) -> Path:
    return artifacts / "function"


class ScriptError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------ wheelhouse


def make_program() -> str:
    make = shutil.which("make")
    if make is None:
        raise ScriptError("`make` is not installed; SAM's makefile builds need it too.", EXIT_BUILD)
    return make


def lambda_platforms() -> list[str]:
    """The platform tags the Makefile installs the layer for, from the Makefile itself."""
    result = subprocess.run(
        [make_program(), "-s", "--no-print-directory", "-C", str(REPO), "print-platforms"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    platforms = result.stdout.split()
    if result.returncode != 0 or not platforms:
        raise ScriptError(f"`make print-platforms` failed: {result.stderr.strip()}", EXIT_BUILD)
    return platforms


def runtime_sdk_pins() -> list[str]:
    """boto3 & co. at the versions this environment tests with, standing in for the runtime's."""
    pins = []
    for name in RUNTIME_SDK:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def requirement_files(variants: Sequence[Variant]) -> list[Path]:
    return sorted({REPO / v.requirements for v in variants})


def wheelhouse_key(files: Sequence[Path], platforms: Sequence[str], extra: Sequence[str]) -> str:
    digest = hashlib.sha256()
    # Nested -r files count too: hash every requirement file in the folder. Only the requirement
    # lines: editing a comment must not send the next run back to the network.
    for path in sorted((REPO / "requirements").glob("*.txt")) + list(files):
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        digest.update(path.name.encode() + b"\0" + "\n".join(filter(None, lines)).encode() + b"\0")
    digest.update(" ".join([*platforms, *extra]).encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise concurrent runs (two test sessions) filling the same wheelhouse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fill_wheelhouse(wheelhouse: Path, platforms: list[str]) -> None:
    # Always every variant's wheels, so that one stamp covers any --variant selection.
    files = requirement_files(VARIANTS)
    extra = runtime_sdk_pins()
    stamp = wheelhouse / f".complete-{wheelhouse_key(files, platforms, extra)}"
    with locked(wheelhouse.parent / ".wheelhouse.lock"):
        if stamp.exists():
            print(f"wheels: reusing {rel(wheelhouse)}")
            return
        print(f"wheels: downloading into {rel(wheelhouse)} ...", flush=True)
        wheelhouse.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
            "--no-deps", "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.12",
            *[arg for platform in platforms for arg in ("--platform", platform)],
            "--dest", str(wheelhouse), "--retries", "1", "--timeout", "30",
            *[arg for path in files for arg in ("-r", str(path))],
            *extra,
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            tail = "\n".join(output.strip().splitlines()[-12:])
            if _NETWORK_ERRORS.search(output):
                raise ScriptError(
                    "Cannot fetch the Lambda wheels: the package index is unreachable (no network?)"
                    f" and {rel(wheelhouse)} is incomplete. Run again with network access once; "
                    f"later runs reuse the wheels offline.\n{tail}",
                    EXIT_NO_WHEELS,
                )
            raise ScriptError(f"pip download failed:\n{tail}", EXIT_BUILD)
        for old in wheelhouse.glob(".complete-*"):
            old.unlink()
        stamp.touch()


# ------------------------------------------------------------------------------ build & size


def build(variant: Variant, artifacts: Path, wheelhouse: Path) -> None:
    """The layer and a function's code, with the targets `sam build` runs, under ``artifacts``."""
    make = make_program()
    if artifacts.exists():
        shutil.rmtree(artifacts)
    for target, folder in ((LAYER_TARGET, "layer"), (FUNCTION_TARGET, "function")):
        (artifacts / folder).mkdir(parents=True)
        command = [
            make, "--no-print-directory", "-C", str(REPO), target,
            f"ARTIFACTS_DIR={artifacts / folder}",
            f"PIP_INSTALL_ARGS=--quiet --no-index --find-links {wheelhouse}",
            *[f"{key}={value}" for key, value in variant.make_variables.items()],
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise ScriptError(f"`make {target}` failed for {variant.name}:\n{tail}", EXIT_BUILD)


def measure(root: Path) -> tuple[int, int, list[tuple[str, int]]]:
    """Total bytes and files under root (symlinks not followed), and the largest top-level entries."""
    total = 0
    files = 0
    per_entry: dict[str, int] = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            path = Path(dirpath) / filename
            stat = path.lstat()
            if not path.is_symlink():
                total += stat.st_size
                files += 1
                top = path.relative_to(root).parts[0]
                per_entry[top] = per_entry.get(top, 0) + stat.st_size
    largest = sorted(per_entry.items(), key=lambda item: item[1], reverse=True)[:8]
    return total, files, largest


# ------------------------------------------------------------------------------ import check

# Run by the Lambda-like interpreter with nothing of ours on sys.path (its docstring says how).
IMPORT_CHECK = REPO / "scripts" / "package_import_check.py"


def find_lambda_python(explicit: str | None) -> str | None:
    candidates: list[str | None] = [explicit, os.environ.get("LAMBDA_PYTHON")]
    # The Lambda runtime stand-in scripts/setup installs (CPython 3.12; -S keeps its packages off).
    candidates += [str(REPO / ".tools" / "lambda-runtime" / "bin" / "python")]
    # Real interpreters before PATH: a pyenv shim fails outside a folder that selects 3.12.
    candidates += [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))]
    candidates += [shutil.which("python3.12")]
    candidates += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == "3.12":
            return candidate
    return None


def runtime_sdk_dir(build_dir: Path, wheelhouse: Path) -> Path | None:
    pins = runtime_sdk_pins()
    if len(pins) != len(RUNTIME_SDK):
        return None
    target = build_dir / ("runtime-sdk-" + hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12])
    if not (target / ".complete").exists():
        if target.exists():
            shutil.rmtree(target)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
             "--no-deps", "--no-index", "--find-links", str(wheelhouse), "--no-compile",
             "--target", str(target), *pins],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ScriptError(f"Could not install {' '.join(pins)}:\n{result.stderr}", EXIT_BUILD)
        (target / ".complete").touch()
    return target


def import_check(python: str, variant: Variant, artifacts: Path, sdk: Path) -> dict[str, Any]:
    scratch = artifacts.parent / f"{artifacts.name}-home"
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(scratch),
        "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        # Stands in for Lambda's /tmp, where agent_core.vendored unpacks the archive.
        "AGENTKIT_VENDOR_DIR": str(scratch / "tmp"),
    }
    env.update(_template_environment())
    modes = ["plain"]
    if variant.vision:
        modes = ["archive", "reuse"] if variant.archived else ["vision"]
    report: dict[str, Any] = {"status": "passed", "notes": []}
    try:
        for mode in modes:
            result = subprocess.run(
                [python, "-I", "-S", "-B", str(IMPORT_CHECK),
                 os.pathsep.join([str(function_dir(artifacts)), str(layer_site(artifacts))]),
                 str(sdk), ",".join(variant.handler_modules), mode],
                capture_output=True, text=True, env=env, cwd=function_dir(artifacts), check=False,
                timeout=300,
            )  # fmt: skip
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                return {"status": "failed", "detail": f"({mode}) {tail}"}
            report.update(json.loads(result.stdout.strip().splitlines()[-1]))
        if variant.archived:
            report["unpacked_bytes"] = measure(scratch / "tmp")[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    details = list(report.pop("notes"))
    if "unpack_seconds" in report:
        details.append(
            f"archive unpacked in {report['unpack_seconds']:.2f} s "
            f"({report['unpacked_bytes'] / MB:.1f} MB in /tmp), reused by a second process in "
            f"{report['reuse_seconds']:.3f} s"
        )
    report["detail"] = "; ".join(details)
    return report


def _template_environment() -> dict[str, str]:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from infra.template_config import load_template_config

        return load_template_config().resolved_environment()
    except Exception as exc:  # the size report must not depend on the template loading
        print(f"note: template environment not applied to the import check ({exc})")
        return {}


# ------------------------------------------------------------------------------ report


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def mib(size: int) -> str:
    return f"{size / MIB:.1f}"


def mb(size: int) -> str:
    return f"{size / MB:.1f}"


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print()
    print("Unpacked size per function, its code plus the dependencies layer (MB = 10**6 bytes;")
    print("MiB = 2**20 bytes, the unit of AWS's limit for the two together, 250 MiB =")
    print("262,144,000 bytes)")
    header = f"{'variant':<25} {'bytes':>13} {'MB':>7} {'MiB':>7} {'budget bytes':>13}  result"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['variant']:<25} {row['bytes']:>13,} {mb(row['bytes']):>7} "
            f"{mib(row['bytes']):>7} {row['budget_bytes']:>13,}  {row['result']}"
        )
    print()
    for row in rows:
        largest = ", ".join(f"{name} {mb(size)} MB" for name, size in row["largest"][:5])
        print(f"{row['variant']}: {row['files']} files; largest: {largest}")
        check = row["import_check"]
        detail = f" ({check['detail']})" if check.get("detail") else ""
        print(f"  import check: {check['status']}{detail}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", choices=[v.name for v in VARIANTS])
    parser.add_argument("--build-dir", type=Path, default=REPO / ".build" / "package-size")
    parser.add_argument("--wheelhouse", type=Path, default=REPO / ".build" / "wheels")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    parser.add_argument("--clean", action="store_true", help="delete each package once measured")
    parser.add_argument("--lambda-python", help="a CPython 3.12 for the import check")
    parser.add_argument("--no-import-check", action="store_true")
    args = parser.parse_args(argv)

    variants = [v for v in VARIANTS if not args.variant or v.name in args.variant]
    build_dir: Path = args.build_dir.resolve()
    wheelhouse: Path = args.wheelhouse.resolve()
    rows: list[dict[str, Any]] = []
    try:
        fill_wheelhouse(wheelhouse, lambda_platforms())
        python = None if args.no_import_check else find_lambda_python(args.lambda_python)
        sdk = runtime_sdk_dir(build_dir, wheelhouse) if python else None
        for variant in variants:
            artifacts = build_dir / variant.name
            print(f"building {variant.name} ({variant.requirements}) ...", flush=True)
            build(variant, artifacts, wheelhouse)
            size, files, largest = measure(artifacts)
            archive = layer_site(artifacts) / "_agentkit_vendor" / "vision.zip"
            if variant.archived != archive.exists():
                raise ScriptError(
                    f"{variant.name}: expected {'an' if variant.archived else 'no'} archive at "
                    f"{rel(archive)}; check VISION_ARCHIVE in the Makefile",
                    EXIT_BUILD,
                )
            if python and sdk:
                check = import_check(python, variant, artifacts, sdk)
            else:
                reason = "disabled" if args.no_import_check else "no CPython 3.12 found"
                check = {"status": "skipped", "detail": reason}
            within_limit = size < LAMBDA_UNZIPPED_LIMIT_BYTES
            within_budget = size <= variant.budget_bytes
            result = "ok"
            if not within_limit:
                result = "OVER LAMBDA LIMIT"
            elif not within_budget:
                result = f"over budget by {mb(size - variant.budget_bytes)} MB"
            if check["status"] == "failed":
                result += ", DOES NOT IMPORT"
            rows.append(
                {
                    "variant": variant.name,
                    "requirements": variant.requirements,
                    "bytes": size,
                    "mib": round(size / MIB, 2),
                    "files": files,
                    "budget_bytes": variant.budget_bytes,
                    "limit_bytes": LAMBDA_UNZIPPED_LIMIT_BYTES,
                    "within_budget": within_budget,
                    "within_limit": within_limit,
                    "largest": largest,
                    "archive_bytes": archive.stat().st_size if variant.archived else None,
                    "import_check": check,
                    "result": result,
                    "path": None if args.clean else str(artifacts),
                }
            )
            if args.clean:
                shutil.rmtree(artifacts)
    except ScriptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _write_json(args.json, rows, exc.exit_code, str(exc))
        return exc.exit_code

    print_table(rows)
    if any(row["import_check"]["status"] == "failed" for row in rows):
        code = EXIT_IMPORT
    elif all(row["within_budget"] and row["within_limit"] for row in rows):
        code = EXIT_OK
    else:
        code = EXIT_SIZE
    _write_json(args.json, rows, code, None)
    return code


def _write_json(
    path: Path | None, rows: list[dict[str, Any]], code: int, error: str | None
) -> None:
    if path is not None:
        report = {"exit_code": code, "error": error, "variants": rows}
        path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
