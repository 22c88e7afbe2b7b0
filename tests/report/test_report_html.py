"""`mgrpo report`: plots exist and are non-blank, HTML embeds them and the config diff."""

from __future__ import annotations

import base64
import io
import json
import re
import time

import numpy as np
import pytest
from PIL import Image
from report_synth import synthetic_records, write_run

from mgrpo.cli import main as cli_main
from mgrpo.report.build import build_report, summarize_run
from mgrpo.report.plots import PLOT_NAMES, ema_smooth
from mgrpo.report.runs import load_run

MIN_PNG_BYTES = 5_000
MIN_PIXEL_STD = 5.0  # grey levels; a blank/white image has ~0


def assert_non_blank_png(data: bytes) -> None:
    image = Image.open(io.BytesIO(data)).convert("L")
    assert image.width >= 400 and image.height >= 300
    pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() > MIN_PIXEL_STD, "plot looks blank"
    assert (pixels < 200).mean() > 0.01, "too few drawn (dark) pixels"


def test_report_two_runs_all_plots_and_html(tmp_path):
    a = write_run(
        tmp_path / "srt",
        steps=120,
        preset="srt",
        rollouts=8,
        seed=0,
        collapse=True,
        eval_results={"benchmarks": {"math500": {"avg@1": 0.42, "n_problems": 5}}},
    )
    b = write_run(
        tmp_path / "mg",
        steps=120,
        preset="m-grpo",
        rollouts=8,
        seed=0,
        eval_results={"math500": {"avg@1": 0.5}, "aime24": {"avg@8": 0.1}},
    )
    out = tmp_path / "report"
    result = build_report([a, b], out)
    assert set(result.plots) == set(PLOT_NAMES)
    for name, path in result.plots.items():
        assert path == out / f"{name}.png"
        assert path.stat().st_size > MIN_PNG_BYTES, name
        assert_non_blank_png(path.read_bytes())
    page = result.html.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(PLOT_NAMES)
    assert_non_blank_png(base64.b64decode(images[0]))
    assert "srt G=8 seed=0" in page and "m-grpo G=8 seed=0" in page
    # config diff: algorithm.preset differs and is highlighted; a shared key is not
    assert re.search(r'<tr class="diff"><td class="key">algorithm\.preset</td>', page)
    assert "Configuration differences (1 keys)" in page
    assert re.search(r'<tr><td class="key">algorithm\.rollouts</td>', page)
    # benchmark table and alarms
    assert "math500 (%)" in page and "aime24 (%)" in page and "42.0 (avg@1)" in page
    assert 'class="alarm"' in page  # the collapsing SRT run raised the (replayed) alarm
    srt, mg = result.summaries
    assert srt.alarm_steps > 0 and srt.alarm_source == "replayed"
    assert mg.alarm_steps == 0
    md = result.markdown.read_text()
    assert "| run | steps | best val acc (%)" in md and "## Benchmarks" in md


def test_summary_numbers_and_logged_alarm(tmp_path):
    records = synthetic_records(30, val_every=10)
    for r, v in zip(records[9::10], [0.2, 0.6, 0.4], strict=True):
        r["val/accuracy"] = v
    for r in records:
        r["alarm/collapse"] = 0
    records[24]["alarm/collapse"] = 1
    records[24]["alarm/reason"] = "policy entropy fell"
    run = load_run(write_run(tmp_path / "r", steps=30, records=records))
    s = summarize_run(run)
    assert (s.best_val, s.best_val_step, s.final_val) == (0.6, 20, 0.4)
    assert s.final_entropy == pytest.approx(records[-1]["entropy/policy"])
    assert (s.alarm_source, s.alarm_steps, s.alarm_first_step) == ("logged", 1, 25)
    assert s.alarm_reasons == ["policy entropy fell"]


def test_unlabelled_run_skips_label_plot_and_truncated_line_noted(tmp_path):
    run = write_run(tmp_path / "r", steps=40, labels=False, val_every=0)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 41, "reward/me')
    subset = ["reward", "label_accuracy", "val_accuracy"]
    result = build_report([run], tmp_path / "out", plots=subset)
    assert list(result.plots) == ["reward"]  # no labels, no validation in this run
    page = result.html.read_text()
    assert "truncated last line" in page and "Resolved configuration" in page


def test_cli_report_and_bad_input(tmp_path, capsys):
    run = write_run(tmp_path / "r", steps=20)
    assert cli_main(["report", str(run), "--plots", "reward,entropy"]) == 0
    assert (run / "report" / "report.html").is_file()
    assert sorted(p.name for p in (run / "report").glob("*.png")) == ["entropy.png", "reward.png"]
    assert "wrote" in capsys.readouterr().out
    assert cli_main(["report", str(run), "--plots", "rewards"]) == 2
    assert "unknown plot(s) ['rewards']; valid: reward," in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    bad = write_run(tmp_path / "bad", steps=5)
    (bad / "metrics.jsonl").write_text('{"step": 1}\n{oops\n{"step": 3}\n')
    assert cli_main(["report", str(bad), "-o", str(tmp_path / "o"), "--plots", "reward"]) == 2
    assert "metrics.jsonl:2" in capsys.readouterr().err
    lenient = ["report", str(bad), "-o", str(tmp_path / "o"), "--lenient", "--plots", "reward"]
    assert cli_main(lenient) == 0


def test_ema_smooth_debiased():
    np.testing.assert_allclose(ema_smooth(np.array([2.0, 2.0, 2.0]), 0.9), [2.0, 2.0, 2.0])
    np.testing.assert_allclose(ema_smooth(np.array([1.0, 3.0]), 0.0), [1.0, 3.0])
    # s1 = 0.5*0+0.5*1 = .5 -> /0.5 = 1; s2 = .25+1.5 = 1.75 -> /0.75
    np.testing.assert_allclose(ema_smooth(np.array([1.0, 3.0]), 0.5), [1.0, 1.75 / 0.75])
    with pytest.raises(ValueError, match="smoothing"):
        ema_smooth(np.zeros(3), 1.0)


def test_report_1000_steps_timed(tmp_path):
    """Target: < 10 s for a 1,000-step file. Printed, not asserted (CPU is shared)."""
    run = write_run(tmp_path / "long", steps=1000, collapse=True)
    start, cpu = time.perf_counter(), time.process_time()
    result = build_report([run], tmp_path / "out")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"\nreport on a 1,000-step metrics file: {elapsed:.2f} s wall, {cpu:.2f} s CPU "
        f"({len(result.plots)} plots, html {result.html.stat().st_size / 1e3:.0f} kB)"
    )
    assert len(result.plots) == len(PLOT_NAMES)
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1000


def test_config_table_marks_missing_and_differing_keys():
    from mgrpo.report.html import config_table

    table, n_diff = config_table(
        ["a", "b"],
        [{"seed": 0, "x.y": [1, 2], "only.a": True}, {"seed": 1, "x.y": [1, 2]}],
    )
    rows = {r[0]: (r[1:], c) for r, c in zip(table.rows, table.row_classes, strict=True)}
    assert n_diff == 2
    assert rows["seed"] == (["0", "1"], "diff")
    assert rows["only.a"] == (["true", "—"], "diff")
    assert rows["x.y"] == (["[1, 2]", "[1, 2]"], "")
    html = table.to_html()
    assert '<tr class="diff"><td class="key">seed</td>' in html
    md = table.to_markdown()
    assert md.splitlines()[0] == "| key | a | b |"
