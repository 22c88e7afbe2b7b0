"""Fair comparisons over seeds: per-arm intervals, paired contrasts, declared families.

What `mgrpo compare ... --baseline ARM` writes to ``stats.md`` (and what the lab study's
``docs/lab-study/stats.py`` prints). Accuracies are the logged ``val/accuracy`` in percent,
differences in points. Each run is reduced to a :class:`RunOutcome`; with T its last
validation step:

- ``final``: the last validation point; ``end``: the mean of the last three (less noisy);
- ``best3``: the best of the 3-point running mean of the validation curve (a peak less
  inflated by evaluation noise than the maximum of many points);
- ``early``: the mean of the validation points in [T/20, T/4] (steps 20-100 of 400);
- ``auc``: the mean of the validation points after step 0, minus step 0;
- ``collapse``: :func:`mgrpo.report.arms.collapse_step` (10-point margin, ``confirm``
  later points); ``collapse_unconfirmed``: the same without the confirmation;
- ``noise``: the evaluation noise, SD of successive validation differences / sqrt(2).

Tables (:func:`study_tables`), each Markdown:

* per arm: mean ± SD, differences from step 0 with 95% Student-t intervals, collapse counts
  and steps, reward trend, noise and ``E_n sigma`` (:func:`~mgrpo.report.stats.expected_max_normal`:
  what ``best - step 0`` reads on a flat curve from evaluation noise alone);
* does the reference rise, then collapse: one-sample t-tests on its own differences, Holm over
  those rows;
* paired contrasts, same seed: every arm against the reference, each variant against the arm
  it is named after (``m-grpo-N8`` against ``m-grpo``) and each extra pair, on ``final`` and
  ``auc``; mean, 95% t and bootstrap intervals (10 000 resamples, seed 0), paired t-test p and
  its Holm adjustment over the whole table;
* declared families (:class:`Family`): contrasts fixed before the runs, each a linear
  combination of arms evaluated seed by seed (``0.5*a + 0.5*b - c``), Holm within the family;
* collapse counts against the reference: Fisher's exact test, Holm over the arms;
* what the step did: training diagnostics averaged over three phases (steps 1-T/8, the T/8
  steps centred on T/2, the last T/8), then over seeds;
* per run.

Contrasts are paired by seed: a contrast is evaluated on the seeds every arm in it ran.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mgrpo.report.arms import COLLAPSE_CONFIRM_POINTS, Stat, collapse_step
from mgrpo.report.runs import RunMetrics
from mgrpo.report.stats import (
    bootstrap_interval,
    expected_max_normal,
    fisher_exact_pvalue,
    fmt_p,
    holm,
    t_interval,
    t_pvalue,
)

__all__ = ["DIAGNOSTICS", "OUTCOMES", "Contrast", "Family", "RunOutcome", "load_families",
           "parse_contrast", "run_outcome", "study_tables"]

DIAGNOSTICS = (  # (metrics key, column title, scale)
    ("label/accuracy", "pseudo-label acc (%)", 100),
    ("label/tie_fraction", "tied votes (%)", 100),
    ("label/vote_share", "vote share", 1),
    ("policy/accuracy", "rollout acc (%)", 100),
    ("pool/maj@G", "maj@G of the pool (%)", 100),
    ("entropy/policy", "entropy policy", 1),
    ("entropy/momentum", "entropy momentum", 1),
    ("filter/dropped_policy", "IQR-dropped policy (%)", 100),
    ("filter/dropped_momentum", "IQR-dropped momentum (%)", 100),
    ("filter/dropped_accuracy", "acc of dropped (%)", 100),
    ("filter/kept_accuracy", "acc of kept (%)", 100),
)
END_POINTS = 3  # validation points averaged into `end`
#: outcomes a contrast or family can be read on: (field of RunOutcome, what it is)
OUTCOMES = {
    "final": "the last validation point (%)",
    "end": f"the mean of the last {END_POINTS} validation points (%)",
    "auc": "the mean of the validation points after step 0, minus step 0 (points)",
}


@dataclass(frozen=True)
class RunOutcome:
    """One run, reduced (module docstring): accuracies in %, steps as logged."""

    step0: float
    best: float
    final: float
    end: float
    best3: float
    best_step: int
    collapse: int | None
    collapse_unconfirmed: int | None
    r0: float  # mean reward over the first 10 steps
    r1: float  # mean reward over the last 10 steps
    auc: float
    curve: list[tuple[int, float]]  # (step, val %) at 0, T/5, ..., T
    points: int  # validation points after step 0
    early: float
    noise: float
    last: int  # T, the last validation step
    phases: dict[str, list[float]] = field(default_factory=dict)  # key -> 3 phase means


def phases(last: int) -> tuple[tuple[int, int], ...]:
    """Steps 1..T/8, the T/8 steps centred on T/2, the last T/8 (T = `last`)."""
    eighth = max(1, last // 8)
    mid = last // 2 - eighth // 2
    return (1, eighth), (mid + 1, mid + eighth), (last - eighth + 1, last)


def phase_means(log: RunMetrics, key: str, last: int) -> list[float]:
    steps, values = log.series(key)
    out = []
    for lo, hi in phases(last):
        inside = values[(steps >= lo) & (steps <= hi)]
        out.append(float(inside.mean()) if inside.size else float("nan"))
    return out


def run_outcome(log: RunMetrics, confirm: int = COLLAPSE_CONFIRM_POINTS) -> RunOutcome:
    """Reduce one run's metrics (it needs a step-0 and at least one later validation point)."""
    steps, val = log.series("val/accuracy")
    if val.size < 2:
        raise ValueError(f"{log.path}: needs >= 2 validation points, has {val.size}")
    val = 100 * val
    _, reward = log.series("reward/mean")
    smooth = np.convolve(val, np.ones(3) / 3, mode="valid")
    last = int(steps[-1])
    early = val[(steps >= last / 20) & (steps <= last / 4) & (steps > 0)]
    return RunOutcome(
        step0=val[0], best=val.max(), final=val[-1], end=float(val[-END_POINTS:].mean()),
        best3=smooth.max(), best_step=int(steps[val.argmax()]),
        collapse=collapse_step(log, confirm=confirm),
        collapse_unconfirmed=collapse_step(log, confirm=0),
        r0=reward[:10].mean(), r1=reward[-10:].mean(), auc=val[1:].mean() - val[0],
        curve=[(int(s), v) for s, v in zip(steps, val) if s % max(1, last // 5) == 0],
        points=val.size - 1, early=early.mean(), noise=np.diff(val).std(ddof=1) / np.sqrt(2),
        last=last, phases={key: phase_means(log, key, last) for key, _, _ in DIAGNOSTICS})


Runs = Mapping[str, Mapping[int, RunOutcome]]  # arm -> seed -> outcome


# ---------------------------------------------------------------- contrasts and families

@dataclass(frozen=True)
class Contrast:
    """``sum_i w_i * arm_i``, seed by seed: ``a - b`` is ``{a: 1, b: -1}``."""

    name: str
    weights: tuple[tuple[str, float], ...]

    def values(self, runs: Runs, outcome: str) -> tuple[list[int], list[float]]:
        """The seeds every arm ran and the contrast's value on each."""
        missing = [arm for arm, _ in self.weights if arm not in runs]
        if missing:
            raise ValueError(f"contrast {self.name!r}: no complete runs of {', '.join(missing)}")
        common = sorted(set.intersection(*(set(runs[arm]) for arm, _ in self.weights)))
        return common, [sum(w * getattr(runs[arm][s], outcome) for arm, w in self.weights)
                        for s in common]


_TERM = re.compile(r"^(?:(?P<coef>\d+(?:\.\d*)?(?:/\d+)?)\s*\*\s*)?(?P<arm>[A-Za-z0-9][\w.+-]*)$")


def parse_contrast(name: str, text: str) -> Contrast:
    """``"a:b"`` (a minus b) or a sum of terms ``[coef *] arm`` joined by `` + `` / `` - ``
    (spaces around the operator: arm names contain ``-``), e.g. ``0.5*x + 0.5*y - z``.
    Coefficients are decimals or fractions (``1/2``). ValueError naming the contrast."""
    text = text.strip()
    if ":" in text and " " not in text:
        arm, _, base = text.partition(":")
        if not arm or not base:
            raise ValueError(f"contrast {name!r}: {text!r} is not ARM:BASE")
        return Contrast(name, ((arm, 1.0), (base, -1.0)))
    parts = re.split(r"\s+([+-])\s+", text)
    signs, terms = ["+"] + parts[1::2], parts[0::2]
    if terms and terms[0].startswith("-"):
        signs[0], terms[0] = "-", terms[0][1:].lstrip()
    weights: dict[str, float] = {}
    for sign, term in zip(signs, terms):
        match = _TERM.match(term.strip())
        if not match:
            raise ValueError(f"contrast {name!r}: cannot read the term {term!r} of {text!r} "
                             "(write [coef *] arm, terms joined by ' + ' or ' - ')")
        num, _, den = (match["coef"] or "1").partition("/")
        coef = float(num) / (float(den) if den else 1.0)
        weights[match["arm"]] = weights.get(match["arm"], 0.0) + (coef if sign == "+" else -coef)
    return Contrast(name, tuple(weights.items()))


@dataclass(frozen=True)
class Family:
    """Contrasts declared together, read on one outcome, Holm-corrected within the family."""

    name: str
    outcome: str
    contrasts: tuple[Contrast, ...]


def load_families(path: str | Path) -> list[Family]:
    """Families from a YAML file: ``families: [{name, outcome, contrasts: {name: expr}}]``.
    ValueError naming the file and the family on a bad entry."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the contrast families ({exc})") from None
    entries = data.get("families") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected 'families:', a list of {{name, outcome, contrasts}}")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: families[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("contrasts"), dict):
            raise ValueError(f"{where}: needs 'name', 'outcome' and a 'contrasts' mapping")
        outcome = entry.get("outcome", "final")
        if outcome not in OUTCOMES:
            raise ValueError(f"{where}: outcome {outcome!r}; valid: {', '.join(OUTCOMES)}")
        try:
            contrasts = tuple(parse_contrast(str(k), str(v)) for k, v in entry["contrasts"].items())
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        out.append(Family(str(entry.get("name", f"family {i + 1}")), outcome, contrasts))
    return out


# ---------------------------------------------------------------- tables

def _ci(values: Sequence[float]) -> str:
    return t_interval(values).fmt()


def _boot(values: Sequence[float]) -> str:
    return bootstrap_interval(values).bounds()


def per_arm_table(runs: Runs) -> str:
    lines = ["## Per arm (mean ± SD over seeds; differences: mean [95% t interval], points)\n",
             "| arm | n | seeds | step 0 (%) | best (%) | best step | final (%) | final - step 0 "
             "| best - step 0 | best3 - step 0 | early - step 0 | AUC - step 0 "
             "| final - best | collapsed | collapsed, unconfirmed drops too | collapse step "
             "| reward first -> last 10 steps | eval noise sigma (E_n sigma) |",
             "|" + "---|" * 18]
    for arm, by_seed in runs.items():
        rows = [by_seed[s] for s in sorted(by_seed)]
        col = [r.collapse for r in rows if r.collapse is not None]
        unconfirmed = sum(r.collapse_unconfirmed is not None for r in rows)
        noise = float(np.mean([r.noise for r in rows]))
        seeds = sorted(by_seed)
        seed_text = (f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1))
                     else ",".join(map(str, seeds)))

        def d(key: str, base: str = "step0", rows: list[RunOutcome] = rows) -> str:
            return _ci([getattr(r, key) - getattr(r, base) for r in rows])

        lines.append(
            f"| {arm} | {len(rows)} | {seed_text} | {Stat([r.step0 for r in rows]).fmt()} "
            f"| {Stat([r.best for r in rows]).fmt()} "
            f"| {Stat([r.best_step for r in rows]).fmt(digits=0)} "
            f"| {Stat([r.final for r in rows]).fmt()} | {d('final')} | {d('best')} "
            f"| {d('best3')} | {d('early')} | {_ci([r.auc for r in rows])} "
            f"| {d('final', 'best')} | {len(col)}/{len(rows)} | {unconfirmed}/{len(rows)} "
            f"| {Stat(col).fmt(digits=0)} "
            f"| {np.mean([r.r0 for r in rows]):.3f} -> {np.mean([r.r1 for r in rows]):.3f} "
            f"| {noise:.1f} ({expected_max_normal(rows[0].points) * noise:.1f}) |")
    return "\n".join(lines) + "\n"


def phenomenon_table(runs: Runs, reference: str) -> str:
    ref = runs.get(reference)
    if not ref:
        return ""
    rows = [ref[s] for s in sorted(ref)]
    tests = [
        ("best - step 0 (rise, the maximum of the validation points)",
         [r.best - r.step0 for r in rows]),
        ("best3 - step 0 (rise, 3-point running mean)", [r.best3 - r.step0 for r in rows]),
        (f"early (steps {rows[0].last // 20}-{rows[0].last // 4}) - step 0",
         [r.early - r.step0 for r in rows]),
        ("final - best (fall)", [r.final - r.best for r in rows]),
        ("final - best3 (fall from the smoothed peak)", [r.final - r.best3 for r in rows]),
        ("final - step 0", [r.final - r.step0 for r in rows]),
        ("reward: last 10 - first 10 steps (x 100)", [100 * (r.r1 - r.r0) for r in rows]),
    ]
    adjusted = holm([t_pvalue(v) for _, v in tests])
    lines = [f"\n## Does {reference} rise, then collapse? (one-sample, n = {len(rows)}; "
             "Holm over these rows)\n",
             "| quantity | mean [95% t] | bootstrap 95% | seeds > 0 | p (t) | p (Holm) |",
             "|---|---|---|---|---|---|"]
    for (name, values), p_adj in zip(tests, adjusted):
        lines.append(f"| {name} | {_ci(values)} | {_boot(values)} "
                     f"| {sum(v > 0 for v in values)}/{len(values)} | {fmt_p(t_pvalue(values))} "
                     f"| {fmt_p(p_adj)} |")
    return "\n".join(lines) + "\n"


def variant_base(arm: str, runs: Runs, reference: str) -> str | None:
    """The arm a variant is named after (``m-grpo-N8`` -> ``m-grpo``; ``co-rewarding-ii-m99``
    -> ``co-rewarding-ii``): the longest other arm name that ``arm`` extends with ``-``."""
    bases = [b for b in runs if b != reference and arm.startswith(b + "-")]
    return max(bases, key=len) if bases else None


def contrast_table(runs: Runs, reference: str, extra: Sequence[tuple[str, str]] = ()) -> str:
    pairs = [(arm, reference) for arm in runs if arm != reference]
    pairs += [(arm, base) for arm in runs if (base := variant_base(arm, runs, reference))]
    pairs += [pair for pair in extra if pair not in pairs]
    rows = []
    for arm, base in pairs:
        if base not in runs:
            continue
        common = sorted(set(runs[arm]) & set(runs[base]))
        if len(common) < 2:
            continue
        for key, label in (("final", "final"), ("auc", "AUC")):
            diff = [getattr(runs[arm][s], key) - getattr(runs[base][s], key) for s in common]
            rows.append((arm, base, label, common, diff, t_pvalue(diff)))
    adjusted = holm([row[-1] for row in rows])
    lines = [f"\n## Paired contrasts, same seed (Holm over all {len(rows)} rows)\n",
             "| arm | minus | outcome | n | mean [95% t] (points) | bootstrap 95% | seeds above "
             "| p (t) | p (Holm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (arm, base, label, common, diff, p), p_adj in zip(rows, adjusted):
        lines.append(f"| {arm} | {base} | {label} | {len(common)} | {_ci(diff)} | {_boot(diff)} "
                     f"| {sum(x > 0 for x in diff)}/{len(diff)} | {fmt_p(p)} | {fmt_p(p_adj)} |")
    return "\n".join(lines) + "\n"


def _terms(contrast: Contrast) -> str:
    """``0.5 a + 0.5 b - c`` for the table."""
    out = []
    for i, (arm, w) in enumerate(contrast.weights):
        sign = "-" if w < 0 else "+"
        coef = "" if abs(w) == 1 else f"{abs(w):g} "
        out.append((f"{'-' if w < 0 else ''}" if i == 0 else f" {sign} ") + coef + arm)
    return "".join(out)


def family_table(runs: Runs, family: Family) -> str:
    """The declared family's contrasts, Holm-corrected over all of them as declared.

    A contrast one of whose arms has no complete runs yet (a half-done sweep) is listed as
    not run and enters the correction with p = 1, so the family keeps its declared size and a
    partial study is never corrected less strictly than the full one.
    """
    rows: list[tuple[Contrast, list[int], list[float], float]] = []
    not_run: dict[str, list[str]] = {}
    for contrast in family.contrasts:
        missing = [arm for arm, _ in contrast.weights if arm not in runs]
        if missing:
            not_run[contrast.name] = missing
            rows.append((contrast, [], [], 1.0))
            continue
        seeds, values = contrast.values(runs, family.outcome)
        rows.append((contrast, seeds, values, t_pvalue(values)))
    adjusted = holm([row[-1] for row in rows])
    pending = (f"; {len(not_run)} not run yet, counted as p = 1" if not_run else "")
    lines = [f"\n## Declared family: {family.name} (outcome: {OUTCOMES[family.outcome]}; "
             f"paired by seed; Holm over its {len(rows)} contrasts{pending})\n",
             "| contrast | = | n | mean [95% t] (points) | bootstrap 95% | seeds above "
             "| p (t) | p (Holm) |",
             "|---|---|---|---|---|---|---|---|"]
    for (contrast, seeds, values, p), p_adj in zip(rows, adjusted):
        if contrast.name in not_run:
            lines.append(f"| {contrast.name} | {_terms(contrast)} | 0 | not run: no complete "
                         f"runs of {', '.join(not_run[contrast.name])} | — | — | — | — |")
            continue
        lines.append(f"| {contrast.name} | {_terms(contrast)} | {len(seeds)} | {_ci(values)} "
                     f"| {_boot(values)} | {sum(v > 0 for v in values)}/{len(values)} "
                     f"| {fmt_p(p)} | {fmt_p(p_adj)} |")
    return "\n".join(lines) + "\n"


def collapse_table(runs: Runs, reference: str) -> str:
    ref = runs.get(reference)
    if not ref:
        return ""
    ref_c = sum(r.collapse is not None for r in ref.values())
    rows = []
    for arm, by_seed in runs.items():
        if arm == reference:
            continue
        c = sum(r.collapse is not None for r in by_seed.values())
        rows.append((arm, c, len(by_seed), fisher_exact_pvalue(c, len(by_seed), ref_c, len(ref))))
    adjusted = holm([row[-1] for row in rows])
    lines = [f"\n## Collapse counts against {reference} ({ref_c}/{len(ref)} collapsed): Fisher's "
             "exact test, two-sided, Holm over the arms\n",
             "| arm | collapsed | p (Fisher) | p (Holm) |",
             "|---|---|---|---|"]
    for (arm, c, n, p), p_adj in zip(rows, adjusted):
        lines.append(f"| {arm} | {c}/{n} | {fmt_p(p)} | {fmt_p(p_adj)} |")
    return "\n".join(lines) + "\n"


def mechanism_table(runs: Runs) -> str:
    last = next(iter(next(iter(runs.values())).values())).last
    windows = " / ".join(f"{lo}-{hi}" for lo, hi in phases(last))
    lines = [f"\n## What the step did (mean over seeds of each phase's mean: steps {windows})\n",
             "| arm | " + " | ".join(title for _, title, _ in DIAGNOSTICS) + " |",
             "|" + "---|" * (len(DIAGNOSTICS) + 1)]
    for arm, by_seed in runs.items():
        cells = []
        for key, _, scale in DIAGNOSTICS:
            per_phase = np.array([r.phases[key] for r in by_seed.values()]) * scale
            if np.isnan(per_phase).all() or (key.startswith("label/")
                                             and np.nanmax(np.abs(per_phase)) == 0):
                cells.append("—")  # not logged, or an arm without a vote (grpo logs 0)
                continue
            means = np.nanmean(per_phase, axis=0)
            fmt = "{:.0f}" if scale == 100 else "{:.3f}"
            logged = int((~np.isnan(per_phase)).all(axis=1).sum())
            note = f" (n = {logged})" if logged < len(per_phase) else ""
            cells.append(" / ".join("—" if math.isnan(m) else fmt.format(m) for m in means)
                         + note)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_run_table(runs: Runs) -> str:
    lines = ["\n## Per run\n",
             "| run | step 0 (%) | best (%) at step | final (%) | collapse step "
             "| val accuracy at 0, T/5, ..., T (%) |",
             "|---|---|---|---|---|---|"]
    for arm, by_seed in runs.items():
        for seed, r in sorted(by_seed.items()):
            curve = ", ".join(f"{s}: {v:.1f}" for s, v in r.curve)
            lines.append(f"| {arm}-s{seed} | {r.step0:.1f} | {r.best:.1f} at {r.best_step} "
                         f"| {r.final:.1f} | {r.collapse if r.collapse is not None else '—'} "
                         f"| {curve} |")
    return "\n".join(lines) + "\n"


def study_tables(runs: Runs, reference: str, extra: Sequence[tuple[str, str]] = (),
                 families: Sequence[Family] = ()) -> str:
    """Every table of the module docstring, in its order, as one Markdown text."""
    for pair in extra:
        _require_arms(runs, pair)
    parts = [per_arm_table(runs), phenomenon_table(runs, reference),
             contrast_table(runs, reference, extra)]
    parts += [family_table(runs, family) for family in families]
    parts += [collapse_table(runs, reference), mechanism_table(runs), per_run_table(runs)]
    return "".join(parts)


def _require_arms(runs: Runs, pair: tuple[str, str]) -> None:
    arm, base = pair
    if arm not in runs or base not in runs:
        raise ValueError(f"--pair {arm}:{base}: no complete runs of "
                         f"{arm if arm not in runs else base!r}")
