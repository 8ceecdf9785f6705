"""6. Lambda package sizes, from ``scripts/package_size.py``.

That script builds every package variant with the Makefile (as ``sam build`` does, wheels for the
Lambda platform from a wheelhouse it caches under .build/wheels) and adds up the unpacked size
Lambda counts against its 262,144,000-byte limit. The bench runs it into its own build folder,
without its import check (which needs a CPython 3.12 and is not about size), and reads its JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from infra.bench.common import REPO, BenchContext, BenchError, Step
from infra.bench.results import Row, Target

SECTION = "6 package"
LAMBDA_LIMIT_BYTES = 262_144_000
MB = 1_000_000
EXIT_NO_WHEELS = 3
# Decimal megabytes: the stricter reading of "60 MB" and "200 MB".
TARGETS = {
    "lean": Target("max", 60.0, "MB"),
    "vision": Target("max", 200.0, "MB"),
    "vision-unpacked": Target("max", (LAMBDA_LIMIT_BYTES - 1) / MB, "MB"),
}
# Each variant is the dependencies layer plus a function's code (both functions share them).
LABELS = {
    "lean": "layer + code, no vision dependencies",
    "vision": "layer + code, numpy + OpenCV zipped (default)",
    "vision-unpacked": "layer + code, numpy + OpenCV unpacked",
}


def run_script(ctx: BenchContext, step: Step) -> tuple[int, dict[str, Any], str]:
    report_path = ctx.workdir / "package_size.json"
    step(
        "package: building every Lambda package variant with the Makefile (scripts/package_size.py)"
    )
    try:
        completed = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "package_size.py"),
                "--json",
                str(report_path),
                "--build-dir",
                str(ctx.workdir / "package-size"),
                "--clean",
                "--no-import-check",
                *[arg for name in ctx.options.package_variants for arg in ("--variant", name)],
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=ctx.options.package_timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"scripts/package_size.py did not finish in {ctx.options.package_timeout_seconds:.0f} s"
        ) from None
    output = (completed.stdout + completed.stderr).strip()
    if not report_path.exists():
        tail = "\n".join(output.splitlines()[-10:])
        raise BenchError(
            f"scripts/package_size.py wrote no report (exit {completed.returncode}):\n{tail}"
        )
    report: dict[str, Any] = json.loads(report_path.read_text())
    return completed.returncode, report, output


def run(ctx: BenchContext, step: Step) -> list[Row]:
    code, report, output = run_script(ctx, step)
    variants = report.get("variants") or []
    if code == EXIT_NO_WHEELS or (not variants and report.get("error")):
        reason = str(report.get("error") or output.splitlines()[-1:] or "no report")
        no_wheels = code == EXIT_NO_WHEELS
        return [
            Row(
                section=SECTION,
                key=f"package.{name}",
                metric=f"Lambda package, {LABELS[name]}: unpacked size",
                unit="MB",
                kit=None,
                target=target,
                skipped=no_wheels,
                error=None if no_wheels else reason[:500],
                note="wheels could not be fetched (no network and no cached wheelhouse)"
                if no_wheels
                else "",
                details={"report": report},
            )
            for name, target in TARGETS.items()
            if not ctx.options.package_variants or name in ctx.options.package_variants
        ]
    rows: list[Row] = []
    for variant in variants:
        name = str(variant["variant"])
        size = int(variant["bytes"])
        archive = variant.get("archive_bytes")
        note = f"{variant['files']:,} files"
        if archive:
            note += f"; vision.zip {archive / MB:.1f} MB, unpacked to /tmp at cold start"
        rows.append(
            Row(
                section=SECTION,
                key=f"package.{name}",
                metric=f"Lambda package, {LABELS.get(name, name)}: unpacked size",
                unit="MB",
                kit=size / MB,
                baseline=LAMBDA_LIMIT_BYTES / MB,
                baseline_label="Lambda's unzipped limit",
                target=TARGETS.get(name, TARGETS["vision-unpacked"]),
                note=note,
                details={
                    "bytes": size,
                    "largest": variant.get("largest"),
                    "result": variant.get("result"),
                },
            )
        )
    return rows
