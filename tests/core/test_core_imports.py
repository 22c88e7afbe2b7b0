"""core/ imports only torch and the standard library (docs/design.md §1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE_DIR = Path(__file__).resolve().parents[2] / "src" / "mgrpo" / "core"
ALLOWED_THIRD_PARTY = {"torch"}
OWN_PREFIX = "mgrpo.core"
# the value checks and the registry helper: standard library only, below every other module
ALLOWED_OWN = {"mgrpo.checks", "mgrpo.registry"}


def _core_modules() -> list[Path]:
    return sorted(CORE_DIR.rglob("*.py"))


def _bad_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:  # relative import inside mgrpo.core
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if name == OWN_PREFIX or name.startswith(OWN_PREFIX + ".") or name in ALLOWED_OWN:
                continue
            if top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__":
                continue
            bad.append(f"{path.name}:{node.lineno}: import {name}")
    return bad


def test_core_has_the_expected_modules() -> None:
    names = {p.stem for p in _core_modules()}
    expected = {"entropy", "filtering", "voting", "advantages", "losses", "ema", "constants"}
    assert expected <= names


@pytest.mark.parametrize("path", _core_modules(), ids=lambda p: p.name)
def test_core_module_imports_only_torch_and_stdlib(path: Path) -> None:
    assert _bad_imports(path) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import math\nimport numpy as np\nfrom mgrpo.answers import x\nfrom . import y\n"
        "def f():\n    import transformers\n",
        encoding="utf-8",
    )
    found = _bad_imports(bad)
    assert [f.split(": ")[1] for f in found] == [
        "import numpy",
        "import mgrpo.answers",
        "import transformers",
    ]


@pytest.mark.parametrize("name", ["checks.py", "registry.py"])
def test_helpers_below_core_import_only_the_standard_library(name: str) -> None:
    tree = ast.parse((CORE_DIR.parent / name).read_text(encoding="utf-8"))
    tops = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [node])
    }
    assert tops and all(t in sys.stdlib_module_names or t == "__future__" for t in tops), tops
