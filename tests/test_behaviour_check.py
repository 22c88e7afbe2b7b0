"""benchmarks/behaviour_runs.py, the check a refactor passes (5 presets x tiny/demo, 4 steps,
every metric but the timers equal): its comparison, on run directories written here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "behaviour_runs.py"


def _load():
    spec = importlib.util.spec_from_file_location("behaviour_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, names: list[str], reward: float, seconds: float) -> None:
    for name in names:
        run = root / name
        run.mkdir(parents=True)
        rows = [{"step": s, "reward/mean": reward * s, "time/step": seconds} for s in (1, 2)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_compare_ignores_timers_and_finds_any_other_difference(tmp_path, capsys):
    runs = _load()
    names = [f"{recipe}-{preset}" for recipe, preset in runs.run_names()]
    assert len(names) == 10 and "demo-co-rewarding-ii" in names
    _write(tmp_path / "a", names, 0.5, 1.0)
    _write(tmp_path / "b", names, 0.5, 7.0)  # only the timers differ
    assert runs.compare(tmp_path / "a", tmp_path / "b") == 0
    (tmp_path / "b" / "tiny-srt" / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "reward/mean": 0.5000001, "time/step": 1.0}) + "\n")
    assert runs.compare(tmp_path / "a", tmp_path / "b") == 1
    out = capsys.readouterr().out
    assert "tiny-srt" in out and "DIFFERENT" in out and "2 vs 1 rows" in out
