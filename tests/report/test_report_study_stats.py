"""docs/lab-study/stats.py, the study's tables, run as a script on a synthetic sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from report_synth import write_run

STATS = Path(__file__).resolve().parents[2] / "docs" / "lab-study" / "stats.py"


def sweep(root: Path) -> Path:
    arms = {"srt": True, "m-grpo": True, "m-grpo-N8": False, "co-rewarding-ii": False,
            "co-rewarding-ii-m99": False}
    for arm, collapse in arms.items():
        for seed in (1, 2, 3):
            write_run(root / f"{arm}-s{seed}", steps=40, seed=seed + 10 * len(arm),
                      collapse=collapse)
    return root


def stats(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(STATS), *args], capture_output=True, text=True,
                          timeout=120)


def contrast_rows(text: str) -> list[tuple[str, str, str, str]]:
    """(arm, minus, outcome, n) of the paired-contrast table."""
    table = text.split("## Paired contrasts")[1].split("\n## ")[0]
    rows = [line.split("|")[1:5] for line in table.splitlines() if line.startswith("| ")]
    return [tuple(cell.strip() for cell in row) for row in rows[1:]]  # past the header


def test_variants_are_paired_with_the_arm_they_extend(tmp_path):
    done = stats(str(sweep(tmp_path)), "--pair", "co-rewarding-ii:m-grpo-N8")
    assert done.returncode == 0, done.stderr
    pairs = {(arm, base) for arm, base, _, _ in contrast_rows(done.stdout)}
    assert ("m-grpo-N8", "m-grpo") in pairs
    assert ("co-rewarding-ii-m99", "co-rewarding-ii") in pairs  # the longest base, not "srt"
    assert ("co-rewarding-ii", "m-grpo-N8") in pairs  # --pair joins the family
    assert ("co-rewarding-ii", "m-grpo") not in pairs  # not a variant of m-grpo
    # four arms against srt, two variants, one extra pair: 7 pairs x 2 outcomes
    assert "Holm over all 14 rows" in done.stdout
    assert "--pair co-rewarding-ii:m-grpo-N8 -->" in done.stdout  # the command is recorded


def test_seeds_keep_only_those_runs(tmp_path):
    done = stats(str(sweep(tmp_path)), "--arms", "srt,m-grpo", "--seeds", "2-3")
    assert done.returncode == 0, done.stderr
    assert {n for _, _, _, n in contrast_rows(done.stdout)} == {"2"}
    assert "| srt | 2 | 2-3 |" in done.stdout


def test_bad_flags_name_the_flag(tmp_path):
    root = sweep(tmp_path)
    for args, message in [
        (["--pair", "srt"], "--pair 'srt': expected ARM:BASE"),
        (["--pair", "srt:ttrl"], "no complete runs of 'ttrl'"),
        (["--seeds", "2-x"], "--seeds: '2-x' is not an integer"),
    ]:
        done = stats(str(root), *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
