"""The package layout (docs/design.md §1): one folder per part, arrows one way, small files.

- Module-level imports between mgrpo modules form no cycle (a cycle would make import order
  matter and hide which part depends on which).
- An mgrpo import inside a function is there only to keep start-up fast or to break a real
  cycle, and says so in a `# lazy, <reason>` comment on the line above.
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


def _top_level_imports(path: Path) -> list[str]:
    """mgrpo modules imported at module level (not inside a function or class body)."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mgrpo"):
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("mgrpo")]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _sources()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _top_level_imports(path):
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


def test_module_level_imports_have_no_cycle() -> None:
    assert _find_cycle(_graph()) is None


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
                while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
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
           for path in sorted((SRC / "train").glob("*.py"))
           for line, name in _any_annotations(ast.parse(path.read_text(encoding="utf-8")))]
    assert bad == []


def test_any_annotation_finder_finds_them() -> None:
    tree = ast.parse("def f(models: Any, batch: 'Any', run: Any | None, x: Any): pass\n"
                     "class C:\n    timer: Optional[Any]\n    other: Any\n")
    assert _any_annotations(tree) == [(1, "models"), (1, "run"), (3, "timer")]


# Checkpoint I/O has three homes: what a run's checkpoint holds, save, restore and the resume
# checks (train/resume.py), the atomic checksummed directory format (train/checkpoint.py),
# and the FSDP shards (parallel/sharded_checkpoint.py).
CHECKPOINT_HOMES = {"train/resume.py", "train/checkpoint.py", "parallel/sharded_checkpoint.py"}
# writes a model's HF directory for `save_pretrained` (merged LoRA weights), not a checkpoint
HF_EXPORT_WRITERS = {"train/lora.py"}
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
    assert _checkpoint_io(SRC / "train" / "resume.py")
    assert _checkpoint_io(SRC / "parallel" / "sharded_checkpoint.py")
