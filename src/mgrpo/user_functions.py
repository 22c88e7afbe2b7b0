"""Functions users name in a recipe, and the error one raises at step time (stdlib only).

A user function is named 'path/to/file.py:function' (a path relative to the working
directory, or absolute) or 'package.module:function' (importable): a reward
(`algorithm.reward`, `mgrpo.train.user_rewards`) or EVOL-RL's embedding
(`algorithm.evol_embedding`, `mgrpo.methods.evol_rl`). `load_user_function` loads it once
(a file is one module however it is named); what cannot be loaded -- a malformed spec, a
missing file or module, a syntax or import error, a missing or non-callable attribute -- is a
ValueError naming the spec, which the resolver turns into a config error (one clean line).

At step time, `call_user_function` runs it: an exception inside it becomes a
`UserFunctionError` whose `user_traceback` holds the user's own frames only (from the
function's frame down to the raise, mgrpo's frames above it left out), and the CLI prints
those frames, then the one-line summary naming the function and the step. A function that
returns something unusable (the wrong shape, NaN) raises `UserFunctionError` with no
traceback: one line. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["UserFunctionError", "call_user_function", "is_user_spec", "load_user_function"]


class UserFunctionError(RuntimeError):
    """A user function failed or broke its contract at step time. The message is one line
    naming the function and the step; `user_traceback` is the formatted traceback of the
    user's own frames when the function raised (None when it returned something unusable)."""

    def __init__(self, message: str, user_traceback: str | None = None) -> None:
        super().__init__(message)
        self.user_traceback = user_traceback


def is_user_spec(name: str) -> bool:
    """'file.py:function' or 'package.module:function' (not a registry name)."""
    return ":" in name


def _file_module(path: Path, spec: str, what: str) -> ModuleType:
    resolved = path.resolve()
    name = "mgrpo_user_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"{what} {spec!r}: cannot load {resolved} as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ValueError(f"{what} {spec!r}: importing {resolved} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return module


def load_user_function(spec: str, what: str = "function") -> Callable[..., Any]:
    """The callable named by ``spec``: ``path/to/file.py:function`` or
    ``package.module:function``; ``what`` names its role in the messages ("reward").

    Raises:
        ValueError: a malformed spec, a missing file or module, an import error, a missing or
            non-callable attribute; the message names the spec.
    """
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise ValueError(f"{what} {spec!r} must be 'path/to/file.py:function' or "
                         "'package.module:function'")
    target, _, attr = spec.rpartition(":")
    if not target or not attr.isidentifier():
        raise ValueError(f"{what} {spec!r}: expected '<file.py or module>:<function name>'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ValueError(f"{what} {spec!r}: file {path} not found (relative paths are "
                             f"read from the working directory {Path.cwd()})")
        module = _file_module(path, spec, what)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"{what} {spec!r}: cannot import module {target!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"{what} {spec!r}: {target} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"{what} {spec!r}: {target}.{attr} is not callable")
    return fn


def call_user_function(fn: Callable[..., Any], failed: str, *args: Any,
                       error: type[UserFunctionError] = UserFunctionError) -> Any:
    """``fn(*args)``; an exception inside it becomes ``error("<failed>: Type: message")``
    carrying the user's frames (module docstring), the original chained. ``failed`` names
    the function and the step ("reward function f.py:g raised at step 3")."""
    try:
        return fn(*args)
    except Exception as exc:
        own = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        frames = "".join(traceback.format_exception(type(exc), exc, own))
        raise error(f"{failed}: {type(exc).__name__}: {exc}", user_traceback=frames) from exc
