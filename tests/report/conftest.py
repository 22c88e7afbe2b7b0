"""Fixtures for tests/report: synthetic run directories (helpers in report_synth.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from report_synth import write_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """make_run(name, **write_run kwargs) -> run directory under tmp_path."""

    def factory(name: str, **kwargs) -> Path:
        return write_run(tmp_path / name, **kwargs)

    return factory
