"""Declared contrasts and families (mgrpo.report.contrasts) and `mgrpo compare --baseline`:
parsing, the paired values against a per-seed loop, Holm within a family, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_synth import write_run

from mgrpo.report.contrasts import (
    Contrast,
    Family,
    family_table,
    load_families,
    parse_contrast,
    run_outcome,
    study_tables,
)
from mgrpo.report.runs import load_run
from mgrpo.report.stats import holm, t_pvalue


def test_parse_pairs_and_linear_combinations():
    assert parse_contrast("c", "m-grpo-N8:m-grpo").weights == (("m-grpo-N8", 1.0), ("m-grpo", -1.0))
    c = parse_contrast("c", "0.5*m-grpo-silent + 1/2 * a-b - c-d")
    assert c.weights == (("m-grpo-silent", 0.5), ("a-b", 0.5), ("c-d", -1.0))
    assert parse_contrast("c", "-a + b").weights == (("a", -1.0), ("b", 1.0))
    assert parse_contrast("c", "a - b + a").weights == (("a", 2.0), ("b", -1.0))
    for bad in ("a +", "2*", "a - * b", ":b"):
        with pytest.raises(ValueError, match="contrast 'c'"):
            parse_contrast("c", bad)


class _O:  # the one field a contrast reads
    def __init__(self, end: float) -> None:
        self.end = end


@settings(deadline=None, max_examples=30, derandomize=True)
@given(values=st.lists(st.lists(st.floats(0, 100), min_size=4, max_size=4), min_size=2,
                       max_size=6),
       drop=st.integers(0, 3))
def test_a_contrast_is_its_weighted_sum_seed_by_seed(values, drop):
    """Against a loop: seeds every arm ran, sum_i w_i y_i per seed."""
    arms = ["a", "b", "c", "d"]
    runs = {arm: {s: _O(row[i]) for s, row in enumerate(values)} for i, arm in enumerate(arms)}
    runs["c"].pop(drop % len(values), None)  # a seed one arm lacks leaves the contrast
    contrast = Contrast("x", (("a", 0.5), ("b", 0.5), ("c", -1.0)))
    seeds, got = contrast.values(runs, "end")
    expected = [0.5 * row[0] + 0.5 * row[1] - row[2] for s, row in enumerate(values)
                if s in runs["c"]]
    assert seeds == sorted(runs["c"]) and got == pytest.approx(expected)


def _sweep(tmp_path, arms: dict[str, bool], seeds=(1, 2, 3)):
    for arm, collapse in arms.items():
        for seed in seeds:
            write_run(tmp_path / f"{arm}-s{seed}", steps=40, seed=seed + 7 * len(arm),
                      collapse=collapse, preset="srt" if arm == "srt" else "m-grpo")
    return {arm: {s: run_outcome(load_run(tmp_path / f"{arm}-s{s}").metrics) for s in seeds}
            for arm in arms}


def test_a_family_is_holm_corrected_within_itself(tmp_path):
    runs = _sweep(tmp_path, {"srt": True, "m-grpo": True, "m-grpo-N8": False})
    family = Family("f", "end", (parse_contrast("n8", "m-grpo-N8:m-grpo"),
                                 parse_contrast("vs srt", "m-grpo:srt")))
    table = family_table(runs, family)
    p = [t_pvalue(c.values(runs, "end")[1]) for c in family.contrasts]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| n8")
            or line.startswith("| vs srt")]
    assert [r[-2].strip() for r in rows] == [
        "< 0.001" if x < 0.001 else f"{x:.3f}" for x in holm(p)]
    assert "Holm over its 2 contrasts" in table and "m-grpo-N8 - m-grpo" in table
    assert "## Declared family: f" in study_tables(runs, "srt", families=[family])


def test_a_contrast_not_run_yet_keeps_the_family_size(tmp_path):
    """A half-done sweep: the missing contrast is listed as not run and enters Holm as p = 1."""
    runs = _sweep(tmp_path, {"srt": True, "m-grpo": True, "m-grpo-N8": False})
    done = parse_contrast("n8", "m-grpo-N8:m-grpo")
    family = Family("f", "end", (done, parse_contrast("later", "m-grpo-N4:m-grpo")))
    table = family_table(runs, family)
    p = t_pvalue(done.values(runs, "end")[1])
    row = next(line.split("|") for line in table.splitlines() if line.startswith("| n8"))
    assert row[-2].strip() == ("< 0.001" if holm([p, 1.0])[0] < 0.001
                               else f"{holm([p, 1.0])[0]:.3f}")
    assert "not run: no complete runs of m-grpo-N4" in table
    assert "Holm over its 2 contrasts; 1 not run yet, counted as p = 1" in table


def test_family_files_name_the_file_and_the_entry(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("families:\n  - name: a\n    outcome: median\n    contrasts: {x: 'a:b'}\n")
    with pytest.raises(ValueError, match=r"f.yaml: families\[0\]: outcome 'median'"):
        load_families(path)
    path.write_text("families:\n  - name: a\n    contrasts: {x: 'a +'}\n")
    with pytest.raises(ValueError, match=r"f.yaml: families\[0\]: contrast 'x'"):
        load_families(path)
    path.write_text("nothing: here\n")
    with pytest.raises(ValueError, match="expected 'families:'"):
        load_families(path)


def _compare(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "mgrpo", "compare", "tiny", "--presets", "srt,m-grpo",
         "--arm", "m-grpo-N8=m-grpo:algorithm.momentum_rollouts=8", "--seeds", "1-3",
         "-o", str(tmp_path), "--report-only", "--no-html", *args],
        capture_output=True, text=True, timeout=300)


def test_compare_baseline_writes_the_study_tables(tmp_path):
    _sweep(tmp_path, {"srt": True, "m-grpo": True, "m-grpo-N8": False})
    family = tmp_path / "family.yaml"
    family.write_text("families:\n  - name: declared\n    outcome: final\n"
                      "    contrasts: {share: 'm-grpo-N8 - m-grpo'}\n")
    done = _compare(tmp_path, "--baseline", "srt", "--pair", "m-grpo-N8:m-grpo",
                    "--family", str(family))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "stats.md").read_text()
    assert "## Does srt rise, then collapse?" in text
    assert "## Declared family: declared" in text and "## Collapse counts against srt" in text
    assert "| m-grpo-N8 | m-grpo | final | 3 |" in text


@pytest.mark.parametrize("args, message", [
    (["--baseline", "ttrl"], "--baseline ttrl: not an arm of this sweep"),
    (["--pair", "m-grpo:srt"], "--pair and --family need --baseline"),
    (["--baseline", "srt", "--pair", "m-grpo:nope"], "--pair 'm-grpo:nope'"),
])
def test_compare_declared_contrasts_are_checked_before_anything_runs(tmp_path, args, message):
    done = _compare(tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_compare_family_naming_an_unknown_arm_is_refused(tmp_path):
    family = tmp_path / "family.yaml"
    family.write_text("families:\n  - name: f\n    contrasts: {x: 'm-grpo-silent:m-grpo'}\n")
    done = _compare(tmp_path, "--baseline", "srt", "--family", str(family))
    assert done.returncode == 2 and "names m-grpo-silent, not an arm" in done.stderr
