"""Audit what ships and what develops the kit for known vulnerabilities, with pip-audit.

Audited: the pinned Lambda requirement sets (requirements/producer.txt, consumer.txt, vision.txt,
their ``-r`` includes flattened here, since pip-audit does not follow them with --no-deps), and the
development environment this interpreter runs in (.venv; the editable kit itself is skipped).

Verdicts and exit codes:
  0  no known vulnerabilities (or, with --allow-offline, the audit could not run)
  1  known vulnerabilities found (listed, with the versions that fix them)
  2  usage or input error (a requirement that is not pinned, a missing file)
  3  could not audit: pip-audit missing, the vulnerability service unreachable, or packages the
     service does not know (the reason is printed as "could not audit: <reason>")

The service is asked about one package first, so an offline machine fails fast instead of
timing out once per package.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT_SETS = ("producer", "consumer", "vision")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")

EXIT_OK, EXIT_VULNERABLE, EXIT_USAGE, EXIT_UNAUDITED = 0, 1, 2, 3


class InputError(Exception):
    """A requirement file the audit cannot use as a lock file."""


class CouldNotAudit(Exception):
    """The audit could not run or could not reach a verdict; the message says why."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path, seen: set[Path] | None = None) -> dict[str, str]:
    """``{normalised name: version}`` of a requirement file and the files it includes with -r."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return {}
    seen.add(path)
    if not path.is_file():
        raise InputError(f"requirement file {path} not found")
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            pins.update(read_pins(path.parent / line.split(maxsplit=1)[1], seen))
            continue
        if line.startswith("-"):
            continue  # pip options (--index-url ...) change nothing in what is audited
        match = _PIN.match(line)
        if match is None:
            raise InputError(
                f"{path.name}:{number}: {line!r} is not pinned with ==; the Lambda requirement "
                "sets are generated from uv.lock (see scripts/lock_requirements.py)"
            )
        pins[normalise(match.group(1))] = match.group(3)
    return pins


@dataclass
class Finding:
    name: str
    version: str
    vulnerability: str
    fix_versions: list[str]
    aliases: list[str] = field(default_factory=list)


@dataclass
class AuditResult:
    audited: dict[str, str] = field(default_factory=dict)  # name -> version
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    findings: list[Finding] = field(default_factory=list)


def pip_audit_command(python: str) -> list[str]:
    return [python, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"]


def run_pip_audit(args: list[str], *, python: str, timeout: float, service: str) -> AuditResult:
    command = [*pip_audit_command(python), "--vulnerability-service", service, *args]
    command += ["--timeout", str(max(1, int(timeout / 4)))]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        raise CouldNotAudit(f"pip-audit did not finish within {timeout:.0f}s") from None
    try:
        report: dict[str, Any] = json.loads(done.stdout or "null") or {}
    except json.JSONDecodeError:
        report = {}
    if "dependencies" not in report:
        # pip-audit exits 1 for findings (with a report); anything else without one is an error.
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise CouldNotAudit(
            f"pip-audit failed (exit {done.returncode}): {lines[-1] if lines else 'no output'}"
        )
    result = AuditResult()
    for dependency in report["dependencies"]:
        name, version = normalise(str(dependency.get("name"))), str(dependency.get("version"))
        if dependency.get("skip_reason"):
            result.skipped[name] = str(dependency["skip_reason"])
            continue
        result.audited[name] = version
        for vuln in dependency.get("vulns") or []:
            result.findings.append(
                Finding(
                    name,
                    version,
                    str(vuln.get("id")),
                    [str(v) for v in vuln.get("fix_versions") or []],
                    [str(a) for a in vuln.get("aliases") or []],
                )
            )
    return result


def audit_pins(pins: dict[str, str], *, python: str, timeout: float, service: str) -> AuditResult:
    with tempfile.TemporaryDirectory(prefix="agentkit-audit-") as folder:
        locked = Path(folder) / "requirements.txt"
        locked.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        return run_pip_audit(
            ["--requirement", str(locked), "--no-deps", "--disable-pip"],
            python=python,
            timeout=timeout,
            service=service,
        )


def probe(pins: dict[str, str], *, python: str, timeout: float, service: str) -> None:
    """Ask the service about one package: fail fast, with the reason, if it cannot answer."""
    name = "requests" if "requests" in pins else sorted(pins)[0]
    result = audit_pins({name: pins[name]}, python=python, timeout=timeout, service=service)
    if name in result.skipped:
        raise CouldNotAudit(
            f"the {service} vulnerability service did not answer for {name} {pins[name]} "
            f"({result.skipped[name]})"
        )


def describe(findings: list[Finding]) -> list[str]:
    lines = []
    for f in sorted(findings, key=lambda f: (f.name, f.vulnerability)):
        fix = f"fixed in {', '.join(f.fix_versions)}" if f.fix_versions else "no fix released yet"
        alias = f" ({', '.join(f.aliases)})" if f.aliases else ""
        lines.append(f"  {f.name} {f.version}: {f.vulnerability}{alias}, {fix}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/audit", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--allow-offline",
        action="store_true",
        help='exit 0 when the audit cannot run (it still prints "could not audit: <reason>")',
    )
    parser.add_argument(
        "--sets",
        default=",".join(REQUIREMENT_SETS),
        help="requirement sets to audit, by name in requirements/ (default: %(default)s)",
    )
    parser.add_argument("--no-env", action="store_true", help="skip the development environment")
    parser.add_argument(
        "--service", choices=("pypi", "osv"), default="pypi", help="vulnerability service"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per pip-audit run")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    args = parser.parse_args(argv)
    python = sys.executable

    sets: dict[str, dict[str, str]] = {}
    try:
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            sets[name] = read_pins(ROOT / "requirements" / f"{name}.txt")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    results: dict[str, AuditResult] = {}
    try:
        if importlib.util.find_spec("pip_audit") is None:
            raise CouldNotAudit("pip-audit is not installed (run scripts/setup)")
        union = {n: v for pins in sets.values() for n, v in pins.items()}
        if union:
            probe(union, python=python, timeout=args.timeout, service=args.service)
            shipped = audit_pins(union, python=python, timeout=args.timeout, service=args.service)
            for name, pins in sets.items():
                results[f"requirements/{name}.txt"] = AuditResult(
                    audited={n: v for n, v in shipped.audited.items() if n in pins},
                    skipped={n: r for n, r in shipped.skipped.items() if n in pins},
                    findings=[f for f in shipped.findings if f.name in pins],
                )
        if not args.no_env:
            results["development environment"] = run_pip_audit(
                ["--skip-editable"], python=python, timeout=args.timeout, service=args.service
            )
    except CouldNotAudit as exc:
        return _verdict(args, results, f"could not audit: {exc}", EXIT_UNAUDITED)

    findings = sum(len(r.findings) for r in results.values())
    unknown = sorted({n for r in results.values() for n in r.skipped})
    if not args.json:
        for target, result in results.items():
            state = f"{len(result.findings)} known vulnerabilities" if result.findings else "clean"
            print(f"{target}: {len(result.audited)} packages audited, {state}")
            for line in describe(result.findings):
                print(line)
    if findings:
        return _verdict(args, results, f"{findings} known vulnerabilities", EXIT_VULNERABLE)
    if unknown:
        reason = (
            f"could not audit: the {args.service} vulnerability service does not know "
            f"{len(unknown)} package(s): {', '.join(unknown[:10])}"
        )
        return _verdict(args, results, reason, EXIT_UNAUDITED)
    return _verdict(args, results, "no known vulnerabilities", EXIT_OK)


def _verdict(
    args: argparse.Namespace, results: dict[str, AuditResult], verdict: str, code: int
) -> int:
    if code == EXIT_UNAUDITED and args.allow_offline:
        code = EXIT_OK
    if args.json:
        print(
            json.dumps(
                {
                    "verdict": verdict,
                    "exit_code": code,
                    "targets": {
                        target: {
                            "audited": len(r.audited),
                            "skipped": r.skipped,
                            "vulnerabilities": [f.__dict__ for f in r.findings],
                        }
                        for target, r in results.items()
                    },
                },
                indent=2,
            )
        )
    else:
        print(f"verdict: {verdict}")
    return code


if __name__ == "__main__":
    sys.exit(main())
