"""Sample browser: one static page per logged step, linked from report.html; text escaped."""

from __future__ import annotations

from report_synth import write_run

from mgrpo.report.build import build_report
from mgrpo.report.samples import write_sample_browser
from mgrpo.train.logs.samples import SamplesWriter, sample_records


def _log(run_dir, steps):
    w = SamplesWriter(run_dir, every=1)
    for step in steps:
        w.write(sample_records(
            step, ["What is <b>1+2</b>?"], ["3"], [None], [["so \\boxed{3}", "<script>x</script>"]],
            [["3", None]], [[0.4, 0.9]], [[True, False]], [[1.0, 0.0]], n_policy=1))


def test_pages_per_step_last_linked_and_escaped(tmp_path):
    run = write_run(tmp_path / "run", steps=20, preset="m-grpo", rollouts=8, seed=0)
    _log(run, [5, 10, 15])
    result = build_report([run], tmp_path / "report")
    page = result.html.read_text()
    assert "<h2>Samples</h2>" in page
    assert 'href="samples/0-run/step-000015.html"' in page
    pages = sorted((tmp_path / "report" / "samples" / "0-run").glob("*.html"))
    assert [p.name for p in pages] == ["step-000005.html", "step-000010.html", "step-000015.html"]
    last = pages[-1].read_text()
    assert "step 15" in last and 'href="step-000005.html"' in last  # links to the other steps
    assert "<script>x</script>" not in last and "&lt;script&gt;" in last
    assert "&lt;b&gt;1+2&lt;/b&gt;" in last
    assert 'class="momentum dropped"' in last


def test_no_samples_no_section(tmp_path):
    run = write_run(tmp_path / "run", steps=5, preset="srt", rollouts=8, seed=0)
    assert write_sample_browser(run, "x", tmp_path / "out") is None
    page = build_report([run], tmp_path / "report").html.read_text()
    assert "<h2>Samples</h2>" not in page
