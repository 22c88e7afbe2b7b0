"""Sample browser: static HTML pages of a run's `samples.jsonl` (`trainer.log_samples_every`).

For each run with logged samples, `write_sample_browser` writes one page per logged step,
``samples/<run index>-<run dir name>/step-<step>.html``: a table per prompt (prompt, pseudo-label,
truth, then one row per rollout in pool order: source, answer, reward, entropy, kept, text),
with links to every other logged step. The report links the page of the LAST logged step of
each run. Every text from the run is escaped; the pages need nothing beyond themselves.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mgrpo.report.html import MISSING
from mgrpo.train.logs.samples import read_samples
from mgrpo.train.run.run_dir import SAMPLES_FILE

__all__ = ["SAMPLES_DIR", "sample_links", "write_sample_browser"]

SAMPLES_DIR = "samples"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr.momentum td { background: #eef5ff; }
tr.dropped td { color: #999; } pre { white-space: pre-wrap; margin: 0; max-width: 60em; }
nav a { margin-right: 0.6em; } nav a.here { font-weight: bold; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _page_name(step: int) -> str:
    return f"step-{step:06d}.html"


def _render_step(title: str, step: int, steps: Sequence[int], records: list[dict[str, Any]]) -> str:
    nav = " ".join(
        f'<a class="here" href="{_page_name(s)}">{s}</a>' if s == step
        else f'<a href="{_page_name(s)}">{s}</a>' for s in steps
    )
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}: step {step}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}: step {step}</h1>",
        f"<nav>logged steps: {nav}</nav>",
    ]
    for i, rec in enumerate(records):
        parts.append(
            f"<h2>prompt {i}</h2><pre>{html.escape(str(rec.get('prompt', '')))}</pre>"
            f"<p>pseudo-label: <b>{_cell(rec.get('label'))}</b>; truth: {_cell(rec.get('truth'))}</p>"
        )
        parts.append("<table><tr><th>#</th><th>source</th><th>answer</th><th>reward</th>"
                     "<th>entropy</th><th>kept</th><th>text</th></tr>")
        for j, r in enumerate(rec.get("rollouts", [])):
            classes = [c for c in (str(r.get("source")), "" if r.get("kept", True) else "dropped") if c]
            parts.append(
                f'<tr class="{" ".join(html.escape(c) for c in classes)}"><td>{j}</td>'
                f"<td>{_cell(r.get('source'))}</td><td>{_cell(r.get('answer'))}</td>"
                f"<td>{_cell(r.get('reward'))}</td><td>{_cell(r.get('entropy'))}</td>"
                f"<td>{_cell(r.get('kept'))}</td>"
                f"<td><pre>{html.escape(str(r.get('text', '')))}</pre></td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_sample_browser(run_dir: Path, title: str, out_dir: Path) -> Path | None:
    """Write the step pages of one run into ``out_dir``; the last step's page, or None when the
    run logged no samples."""
    rows = read_samples(Path(run_dir) / SAMPLES_FILE)
    if not rows:
        return None
    by_step: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_step.setdefault(row["step"], []).append(row)
    steps = sorted(by_step)
    out_dir.mkdir(parents=True, exist_ok=True)
    for step in steps:
        (out_dir / _page_name(step)).write_text(
            _render_step(title, step, steps, by_step[step]), encoding="utf-8")
    return out_dir / _page_name(steps[-1])


def sample_links(runs: Sequence[Any], out: Path) -> list[tuple[str, str]]:
    """Write every run's sample browser under ``out/samples``; the report section linking them
    (``[(heading, html)]``, empty when no run logged samples). ``runs`` are `RunData`."""
    links = []
    for i, run in enumerate(runs):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(run.path).name) or "run"
        page = write_sample_browser(Path(run.path), run.name, out / SAMPLES_DIR / f"{i}-{slug}")
        if page is not None:
            href = html.escape(page.relative_to(out).as_posix())
            links.append(f'<li><a href="{href}">{html.escape(run.name)}</a> '
                         f"(last logged step; the page links the others)</li>")
    return [("Samples", "<ul>" + "".join(links) + "</ul>")] if links else []
