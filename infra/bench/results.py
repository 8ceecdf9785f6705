"""Rows of the benchmark table, their targets and verdicts, and the JSON written with them.

Every ratio is ``kit / baseline``: below 1 the kit needs less (requests, calls, memory, time),
above 1 it does more (throughput). A target bounds either the kit's value or that ratio.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TargetKind = Literal["max", "min", "ratio_max", "ratio_min"]
Status = Literal["PASS", "FAIL", "-", "ERROR", "SKIPPED"]


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    threshold: float
    unit: str = ""

    def describe(self) -> str:
        sign = "<=" if self.kind in ("max", "ratio_max") else ">="
        if self.kind.startswith("ratio"):
            return f"ratio {sign} {self.threshold:g}"
        return f"{sign} {self.threshold:g}{(' ' + self.unit) if self.unit else ''}"

    def holds(self, value: float | None, ratio: float | None) -> bool | None:
        measured = ratio if self.kind.startswith("ratio") else value
        if measured is None or math.isnan(measured):
            return None
        if self.kind in ("max", "ratio_max"):
            return measured <= self.threshold
        return measured >= self.threshold


@dataclass
class Row:
    """One line of the table."""

    section: str
    key: str  # stable identifier, e.g. "requests.label_row.batch10.warm"
    metric: str
    unit: str
    kit: float | None
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    note: str = ""
    error: str | None = None
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    # Set when the ratio is not kit / baseline of the columns (e.g. a median of paired ratios).
    measured_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.measured_ratio is not None:
            return self.measured_ratio
        if self.kit is None or self.baseline is None or self.baseline == 0:
            return None
        return self.kit / self.baseline

    @property
    def status(self) -> Status:
        if self.error is not None:
            return "ERROR"
        if self.skipped:
            return "SKIPPED"
        if self.target is None:
            return "-"
        verdict = self.target.holds(self.kit, self.ratio)
        if verdict is None:
            return "ERROR"
        return "PASS" if verdict else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = self.target.describe() if self.target else None
        data["target_spec"] = asdict(self.target) if self.target else None
        data["ratio"] = self.ratio
        data["status"] = self.status
        return data


def error_row(section: str, what: str, exc: BaseException) -> Row:
    return Row(
        section=section,
        key=f"{section}.error",
        metric=what,
        unit="",
        kit=None,
        error=f"{type(exc).__name__}: {exc}"[:500],
    )


def fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x" if value < 100 else f"{value:,.0f}x"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    memory_gb: float | None = None
    try:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    load: tuple[float, float, float] | None = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gb": round(memory_gb, 1) if memory_gb else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in load] if load else None,
    }
