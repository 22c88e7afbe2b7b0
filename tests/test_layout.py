"""The package layout (docs/design.md §1): one folder per part, arrows one way, small files.

- Imports between mgrpo modules form no cycle, counting every import: module level, inside
  functions and under `if TYPE_CHECKING:` (a cycle hidden in a function would still make the
  parts depend on each other; a typing-only one still ties their layers together).
- An mgrpo import inside a function is there only for start-up time, an optional dependency
  or a script run as a child process, and says so in a `# lazy, <reason>` comment above it.
- The config and the method modules import no torch: a config error costs milliseconds.
- No source file passes 520 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mgrpo"
MAX_LINES = 520


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """`mgrpo.a.b.name` -> the longest prefix that is a module of the package."""
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in modules:
            return name
        parts.pop()
    return None


def _imports(path: Path, *, module_level_only: bool = False) -> list[str]:
    """mgrpo modules imported anywhere in `path`: at module level, under `if TYPE_CHECKING:`,
    inside functions and class bodies (`module_level_only`: the top-level statements only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mgrpo"):
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("mgrpo")]
    return found


def _graph(*, module_level_only: bool = False) -> dict[str, set[str]]:
    modules = _sources()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, module_level_only=module_level_only):
            resolved = _resolve(imported, modules)
            if resolved and resolved != name and not name.startswith(resolved + "."):
                targets.add(resolved)
        graph[name] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_imports_have_no_cycle() -> None:
    assert _find_cycle(_graph()) is None


def test_the_graph_counts_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\n"
                      "from mgrpo.a import x\n"
                      "if TYPE_CHECKING:\n    from mgrpo.b import y\n"
                      "def f():\n    # lazy, start-up\n    import mgrpo.c\n", encoding="utf-8")
    assert set(_imports(module)) == {"mgrpo.a", "mgrpo.a.x", "mgrpo.b", "mgrpo.b.y", "mgrpo.c"}
    assert set(_imports(module, module_level_only=True)) == {"mgrpo.a", "mgrpo.a.x"}


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_mgrpo_imports_say_why() -> None:
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                is_mgrpo = (
                    isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mgrpo")
                ) or (
                    isinstance(node, ast.Import)
                    and any(a.name.startswith("mgrpo") for a in node.names)
                )
                if not is_mgrpo:
                    continue
                # the reason stands in the comment block right above the import (or the group
                # of imports it starts)
                above = node.lineno - 2
                while above >= 0 and (lines[above].strip().startswith(("from ", "import "))
                                      or not lines[above].strip()):
                    above -= 1
                if above < 0 or "lazy" not in lines[above]:
                    missing.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert missing == []


def test_no_source_file_is_too_long() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


# names that always hold one of the project's own records in train/ (StepModels, StepBatch,
# Run, StageTimer, AlgorithmSpec, UpdateSettings, Rollouts, LossSet, LossStats, DistContext,
# Config, Precision, ModelLayout, AnswerChecker, Equivalence): annotated with it, never `Any`
TYPED_NAMES = {"models", "batch", "run", "timer", "spec", "settings", "rollouts", "ls",
               "stats", "ctx", "cfg", "precision", "layout", "checker", "equivalent"}


def _any_annotations(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every argument or annotated field in TYPED_NAMES whose annotation
    mentions `Any` (bare, `Any | None`, `Optional[Any]`, ...)."""
    found = []
    for node in ast.walk(tree):
        named: list[tuple[str, ast.expr | None, int]] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            named += [(a.arg, a.annotation, a.lineno)
                      for a in args.posonlyargs + args.args + args.kwonlyargs]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            named.append((node.target.id, node.annotation, node.lineno))
        for name, annotation, line in named:
            if name in TYPED_NAMES and annotation is not None and any(
                    isinstance(n, ast.Name) and n.id == "Any" for n in ast.walk(annotation)):
                found.append((line, name))
    return found


def test_train_annotations_name_the_project_types() -> None:
    bad = [f"{path.relative_to(SRC)}:{line} {name}: Any"
           for path in sorted((SRC / "train").rglob("*.py"))
           for line, name in _any_annotations(ast.parse(path.read_text(encoding="utf-8")))]
    assert bad == []


def test_any_annotation_finder_finds_them() -> None:
    tree = ast.parse("def f(models: Any, batch: 'Any', run: Any | None, x: Any): pass\n"
                     "class C:\n    timer: Optional[Any]\n    other: Any\n")
    assert _any_annotations(tree) == [(1, "models"), (1, "run"), (3, "timer")]


# Checkpoint I/O has three homes: what a run's checkpoint holds, save and restore
# (train/run/resume.py), the atomic checksummed directory format (train/run/checkpoint.py),
# and the FSDP shards (parallel/sharded_checkpoint.py).
CHECKPOINT_HOMES = {"train/run/resume.py", "train/run/checkpoint.py",
                    "parallel/sharded_checkpoint.py"}
# writes a model's HF directory for `save_pretrained` (merged LoRA weights), not a checkpoint
HF_EXPORT_WRITERS = {"train/layout/lora.py"}
CHECKPOINT_IO_MODULES = ("safetensors", "torch.distributed.checkpoint")
CHECKPOINT_IO_NAMES = {"save_checkpoint", "load_tensors", "save_sharded", "load_sharded",
                       "optimizer_to_files", "optimizer_from_files", "save_file", "load_file",
                       "get_state_dict", "set_state_dict"}


def _checkpoint_io(path: Path) -> list[str]:
    """Checkpoint-I/O imports and names used in `path` (module level or inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        bad = [m for m in modules if m.startswith(CHECKPOINT_IO_MODULES)]
        name = node.id if isinstance(node, ast.Name) else (
            node.attr if isinstance(node, ast.Attribute) else None)
        if name in CHECKPOINT_IO_NAMES:
            bad.append(name)
        found += [f"{path.relative_to(SRC)}:{node.lineno}: {b}" for b in bad]
    return found


def test_checkpoint_save_and_restore_live_in_one_module() -> None:
    found = []
    for path in sorted([*(SRC / "train").rglob("*.py"), *(SRC / "parallel").rglob("*.py")]):
        rel = str(path.relative_to(SRC))
        if rel not in CHECKPOINT_HOMES | HF_EXPORT_WRITERS:
            found += _checkpoint_io(path)
    assert found == []
    # the rule sees what it forbids
    assert _checkpoint_io(SRC / "train" / "run" / "resume.py")
    assert _checkpoint_io(SRC / "parallel" / "sharded_checkpoint.py")


# ---------------------------------------------------------------- config errors stay light

TORCH_FREE_PROBE = """
import sys
from mgrpo.config import ConfigError, dump_config, resolve_config
import mgrpo.methods
errors = 0
for overrides in {overrides!r}:
    try:
        resolve_config("tiny", overrides)
    except ConfigError:
        errors += 1
dump_config(resolve_config("demo", ["algorithm.preset=co-rewarding-ii"]))
heavy = sorted(m for m in ("torch", "numpy", "transformers") if m in sys.modules)
print(errors, heavy)
"""


def test_a_config_error_imports_no_torch() -> None:
    import subprocess
    import sys

    overrides = [["trainer.max_steps=0"], ["algorithm.preset=nope"],
                 ["algorithm.preset=srt", "algorithm.iqr_k=0.5"], ["algorithm.rent_tokens=0"],
                 ["algorithm.reward=nope"], ["algorithm.filter_scope=x"], ["data.answer_kind=x"]]
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_PROBE.format(overrides=overrides)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=1) == [str(len(overrides)), "[]\n"]


# ---------------------------------------------------------------- no bare Any in train/

def _public_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """Module-level public functions and the public methods (and `__init__`) of public
    classes."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            found.append(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            found += [f for f in node.body if isinstance(f, ast.FunctionDef)
                      and (not f.name.startswith("_") or f.name == "__init__")]
    return found


def _bare_any(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, what) of every parameter or return of a public signature annotated `Any`
    itself (a JSON payload's `dict[str, Any]` is allowed: no finer type exists)."""
    bad = []
    for func in _public_functions(tree):
        args = func.args
        params = args.posonlyargs + args.args + args.kwonlyargs
        params += [a for a in (args.vararg, args.kwarg) if a is not None]
        for arg in params:
            if isinstance(arg.annotation, ast.Name) and arg.annotation.id == "Any":
                bad.append((arg.lineno, f"{func.name}({arg.arg})"))
        if isinstance(func.returns, ast.Name) and func.returns.id == "Any":
            bad.append((func.lineno, f"{func.name} -> Any"))
    return bad


def test_no_bare_any_in_the_public_signatures_of_train() -> None:
    bad = [f"{path.relative_to(SRC)}:{line} {what}"
           for path in sorted((SRC / "train").rglob("*.py"))
           for line, what in _bare_any(ast.parse(path.read_text(encoding="utf-8")))]
    assert bad == []


def test_bare_any_finder_finds_them() -> None:
    tree = ast.parse("def f(x: Any, y: dict[str, Any], *a: Any) -> Any: pass\n"
                     "def _g(x: Any): pass\n"
                     "class C:\n    def m(self, z: Any): pass\n    def _p(self, z: Any): pass\n")
    assert _bare_any(tree) == [(1, "f(x)"), (1, "f(a)"), (1, "f -> Any"), (4, "m(z)")]
