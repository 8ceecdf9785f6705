#!/usr/bin/env python3
"""Draw the CloudWatch dashboard of template.yaml as an SVG widget grid: docs/dashboard.svg.

The picture is made from the template's DashboardBody itself (its Fn::Sub resolved with the
parameters' defaults, the stack name "agentkit" and placeholders for resource names), so it
shows what a deploy creates: each widget at its grid position and size, with its title and what
it plots. tests/template/test_dashboard.py fails when the file is out of date.

    .venv/bin/python scripts/render_dashboard.py            # rewrite docs/dashboard.svg
    .venv/bin/python scripts/render_dashboard.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OUTPUT = REPO / "docs" / "dashboard.svg"
STACK_NAME = "agentkit"
REGION = "us-east-1"

# Pixels per grid unit: CloudWatch dashboards are 24 units wide.
COLUMN = 50
ROW = 30
MARGIN = 16
FONT = "Helvetica, Arial, sans-serif"

_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
_SEARCH = re.compile(
    r"SEARCH\('\{(?P<schema>[^}]*)\}\s+MetricName=\"(?P<metric>[^\"]+)\"(?P<filters>[^']*)',"
    r"\s*'(?P<stat>[^']+)',\s*(?P<period>\d+)\)"
)


def resolve_sub(text: str, values: dict[str, str]) -> str:
    """Fn::Sub on ``text``: known names from ``values``; a resource ``X`` or ``X.Attr`` -> <X...>."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        return f"<{name}>"

    return _SUB_VARIABLE.sub(value, text).replace("${!", "${")


def dashboard_resource(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = [
        r for r in template["Resources"].values() if r.get("Type") == "AWS::CloudWatch::Dashboard"
    ]
    return dashboard


def dashboard_body(template: dict[str, Any], parameters: dict[str, str | None]) -> dict[str, Any]:
    """The DashboardBody JSON as a deploy with these parameter values would create it."""
    sub = dashboard_resource(template)["Properties"]["DashboardBody"]["Fn::Sub"]
    values = {name: str(v) for name, v in parameters.items() if v is not None}
    values.update({"AWS::StackName": STACK_NAME, "AWS::Region": REGION})
    body: dict[str, Any] = json.loads(resolve_sub(sub, values))
    return body


def template_dashboard_body(path: Path | None = None) -> dict[str, Any]:
    from infra.template_config import DEFAULT_TEMPLATE_PATH, _read_template, load_template_config

    path = path or DEFAULT_TEMPLATE_PATH
    return dashboard_body(_read_template(path), load_template_config(path).parameters)


def search_terms(expression: str) -> dict[str, Any] | None:
    """The parts of a SEARCH('{Namespace,dim,...} MetricName="m" k="v"', 'Stat', period)."""
    match = _SEARCH.search(expression)
    if match is None:
        return None
    namespace, *dimensions = [p.strip() for p in match.group("schema").split(",")]
    filters = dict(re.findall(r'(\w+)="([^"]*)"', match.group("filters")))
    return {
        "namespace": namespace,
        "dimensions": dimensions,
        "metric": match.group("metric"),
        "filters": filters,
        "stat": match.group("stat"),
        "period": int(match.group("period")),
    }


def series_lines(widget: dict[str, Any]) -> list[str]:
    """One short line per thing the widget shows."""
    properties = widget.get("properties", {})
    if widget["type"] == "text":
        return [line.lstrip("# ") for line in properties.get("markdown", "").splitlines()[1:]]
    if widget["type"] == "alarm":
        return [re.sub(r"^<(\w+)\.Arn>$", r"\1", a) for a in properties.get("alarms", [])]
    lines: list[str] = []
    default_stat = properties.get("stat", "Average")
    for metric in properties.get("metrics", []):
        if isinstance(metric[0], dict) and "expression" in metric[0]:
            terms = search_terms(metric[0]["expression"])
            if terms is not None:
                lines.append(f"per stage: {terms['metric']} ({terms['stat']})")
            continue
        options = metric[-1] if isinstance(metric[-1], dict) else {}
        name = metric[1]
        label, stat = options.get("label", name), options.get("stat", default_stat)
        lines.append(label if label == stat else f"{label} ({stat})")
    for line in properties.get("annotations", {}).get("horizontal", []):
        lines.append(f"line: {line.get('label', '')} = {line.get('value')}")
    return lines


def _wrap(text: str, width_px: int, size: int) -> list[str]:
    per_line = max(8, int(width_px / (size * 0.55)))
    words, lines, current = text.split(), [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if len(candidate) > per_line and current:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def render_svg(body: dict[str, Any]) -> str:
    widgets = body["widgets"]
    width = 24 * COLUMN + 2 * MARGIN
    height = max(w["y"] + w["height"] for w in widgets) * ROW + 2 * MARGIN
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{FONT}">',
        f'<rect width="{width}" height="{height}" fill="#f2f3f3"/>',
    ]
    for widget in widgets:
        x = MARGIN + widget["x"] * COLUMN + 3
        y = MARGIN + widget["y"] * ROW + 3
        w = widget["width"] * COLUMN - 6
        h = widget["height"] * ROW - 6
        kind = widget["type"]
        out.append(
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="#ffffff" '
            'stroke="#d5dbdb"/>'
        )
        properties = widget.get("properties", {})
        title = properties.get("title")
        if kind == "text":
            title = properties.get("markdown", "").splitlines()[0].lstrip("# ")
        out.append(
            f'<text x="{x + 10}" y="{y + 20}" font-size="14" font-weight="bold" '
            f'fill="#16191f">{escape(str(title))}</text>'
        )
        if kind == "metric":
            # A stand-in plot area with the widget's kind, so the grid reads like the console.
            plot_top = y + 30
            plot_height = h - 40 - 14 * min(len(series_lines(widget)), 6)
            if plot_height > 20:
                out.append(
                    f'<rect x="{x + 10}" y="{plot_top}" width="{w - 20}" height="{plot_height}" '
                    'fill="#f8f8f8" stroke="#eaeded"/>'
                )
                out.append(
                    f'<text x="{x + 16}" y="{plot_top + 16}" font-size="10" fill="#879596">'
                    f"{escape(properties.get('view', 'timeSeries'))}, "
                    f"{properties.get('period', 300)} s</text>"
                )
            line_y = y + h - 10 - 14 * (min(len(series_lines(widget)), 6) - 1)
        else:
            line_y = y + 40
        lines = series_lines(widget)
        if kind == "text":
            lines = [part for line in lines for part in _wrap(line, w - 20, 11)]
        if kind == "alarm":
            lines = [", ".join(lines[i : i + 2]) for i in range(0, len(lines), 2)]
        for line in lines[: max(1, (y + h - line_y) // 14 + 1)]:
            out.append(
                f'<text x="{x + 10}" y="{line_y}" font-size="11" fill="#545b64">'
                f"{escape(line)}</text>"
            )
            line_y += 14
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Exit 1 if the file is out of date.")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="Where to write the SVG.")
    args = parser.parse_args(argv)
    svg = render_svg(template_dashboard_body())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != svg:
            print(f"{args.output} is out of date: run scripts/render_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(svg)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
