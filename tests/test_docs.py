"""Docs that restate the code are checked against it: the config reference (docs/config.md),
the README's table of main keys, and the run directory's one description (docs/design.md §6)."""

from __future__ import annotations

import re
from pathlib import Path

from mgrpo.config.reference import config_keys, reference_markdown
from mgrpo.train.run.run_dir import LAYOUT

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_generated_from_the_fields():
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert text == reference_markdown(), "regenerate: python -m mgrpo.config.reference > docs/config.md"


def _readme_key_rows() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    return [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("|")]


def test_readme_key_table_names_real_keys():
    keys = config_keys()
    named = []
    for cell in _readme_key_rows():  # `a.b.c` / `d` -> a.b.c, a.b.d
        parts = re.findall(r"`([^`]+)`", cell)
        section = parts[0].rsplit(".", 1)[0]
        named += [parts[0]] + [p if "." in p else f"{section}.{p}" for p in parts[1:]]
    assert len(named) >= 15
    assert [k for k in named if k.rstrip("*").rstrip(".") not in keys
            and not any(key.startswith(k.rstrip("*")) for key in keys)] == []
    assert "docs/config.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_design_doc_prints_the_run_directory_layout():
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    assert LAYOUT in design
