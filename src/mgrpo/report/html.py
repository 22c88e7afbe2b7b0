"""Self-contained HTML report: embedded PNGs, tables, configs side by side with diffs.

Everything the page needs is inline (base64 ``data:`` images, one ``<style>`` block), so
``report.html`` can be mailed or attached to an issue on its own. All text from run files
is escaped.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MISSING = "—"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr.diff td { background: #fff3c4; }
tr.diff td.key { font-weight: bold; }
td.alarm { color: #b00020; font-weight: bold; }
.plots img { max-width: 48%; margin: 0.5%; border: 1px solid #eee; }
.warn { color: #8a5300; } code { font-size: 0.9em; }
"""


@dataclass
class Table:
    """A plain table rendered to markdown or HTML; ``row_classes`` are CSS classes per row."""

    headers: list[str]
    rows: list[list[str]]
    row_classes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        def cell(text: str) -> str:
            return str(text).replace("|", "\\|").replace("\n", " ")

        lines = [
            "| " + " | ".join(cell(h) for h in self.headers) + " |",
            "|" + "|".join("---" for _ in self.headers) + "|",
        ]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def to_html(self, cell_classes: dict[tuple[int, int], str] | None = None) -> str:
        cell_classes = cell_classes or {}
        out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)]
        for i, row in enumerate(self.rows):
            cls = self.row_classes[i] if i < len(self.row_classes) else ""
            tr = f'<tr class="{cls}">' if cls else "<tr>"
            cells = []
            for j, c in enumerate(row):
                cc = cell_classes.get((i, j), "key" if j == 0 else "")
                attr = f' class="{cc}"' if cc else ""
                cells.append(f"<td{attr}>{html.escape(str(c))}</td>")
            out.append(tr + "".join(cells) + "</tr>")
        out.append("</table>")
        return "\n".join(out)


def format_value(value: Any) -> str:
    """Config values as YAML-ish text (lists/dicts as JSON, None as 'null')."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def config_table(names: Sequence[str], flat_configs: Sequence[dict[str, Any]]) -> tuple[Table, int]:
    """Configs side by side (rows: dotted keys, columns: runs); differing rows class 'diff'.

    A key missing from a run counts as a difference and shows as an em dash.
    Returns the table and the number of differing keys.
    """
    keys = sorted(set().union(*[set(c) for c in flat_configs])) if flat_configs else []
    rows: list[list[str]] = []
    classes: list[str] = []
    n_diff = 0
    for key in keys:
        values = [format_value(c[key]) if key in c else MISSING for c in flat_configs]
        differs = len(flat_configs) > 1 and len(set(values)) > 1
        n_diff += differs
        rows.append([key, *values])
        classes.append("diff" if differs else "")
    return Table(["key", *names], rows, classes), n_diff


def embed_png(path: str | Path) -> str:
    """``<img>`` tag with the PNG inlined as base64."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(Path(path).stem)
    return f'<img alt="{alt}" title="{alt}" src="data:image/png;base64,{data}">'


def render_report(
    *,
    title: str,
    summary: Table,
    alarm_cells: set[tuple[int, int]],
    plots: dict[str, Path],
    names: Sequence[str],
    flat_configs: Sequence[dict[str, Any]],
    benchmark: Table | None,
    extra_sections: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The full page. ``extra_sections`` are (heading, trusted HTML) pairs (e.g. a scaling table)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        summary.to_html({cell: "alarm" for cell in alarm_cells}),
    ]
    for heading, body in extra_sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", body]
    if benchmark is not None:
        parts += ["<h2>Benchmarks</h2>", benchmark.to_html()]
    parts.append('<h2>Curves</h2><div class="plots">')
    parts += [embed_png(p) for p in plots.values()]
    parts.append("</div>")
    table, n_diff = config_table(list(names), list(flat_configs))
    if len(names) > 1:
        diff_only = Table(
            table.headers,
            [r for r, c in zip(table.rows, table.row_classes, strict=True) if c == "diff"],
            ["diff"] * n_diff,
        )
        parts += [
            f"<h2>Configuration differences ({n_diff} keys)</h2>",
            diff_only.to_html() if n_diff else "<p>The resolved configs are identical.</p>",
            "<details><summary>All resolved configs side by side (differences highlighted)"
            "</summary>",
            table.to_html(),
            "</details>",
        ]
    else:
        parts += ["<h2>Resolved configuration</h2>", table.to_html()]
    if notes:
        parts.append("<h2>Reader notes</h2><ul>")
        parts += [f'<li class="warn">{html.escape(n)}</li>' for n in notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
