"""Label-free collapse alarm: warn while a run is collapsing, from signals a user has.

Self-rewarding RL (SRT, and M-GRPO without its momentum anchor) tends to *collapse*: the
policy learns to agree with itself instead of being right -- entropy falls towards 0,
the vote becomes unanimous, responses shrink to a short degenerate answer, and training
reward keeps rising while validation accuracy falls (the paper's Figs 1, 2, 4). The paper
shows these curves after the fact; :class:`CollapseAlarm` watches them every step.

Rules (each evaluated on EMA-smoothed signals, weight ``smoothing``, so one noisy step does
not trip it; the rule must hold ``patience`` consecutive steps before it fires):

1. ``entropy`` -- policy entropy below ``entropy_fraction`` x its initial value, where the
   initial value is the median of the first ``warmup_steps`` logged values (``entropy/policy``).
2. ``length`` -- vote share at least ``vote_share_threshold`` *and* mean response length
   below ``length_fraction`` x its initial (median of the warm-up window) value: unanimous
   agreement on ever-shorter answers. A unanimous vote alone is not an alarm (easy data
   is unanimous in healthy runs); a length drop alone is not either (models learn to be brief).
3. ``divergence`` -- (only when ``val/accuracy`` is logged) val accuracy, EMA-smoothed over
   validation points (weight ``val_smoothing``), is more than ``val_drop`` below its best so
   far while the smoothed training reward is more than ``reward_rise`` above its value at the
   best-validation step, on ``val_patience`` consecutive validation points. Evaluated on
   validation steps only and held until the next one (validation is sparse). The smoothing
   and the patience keep the max-so-far of a noisy validation score from tripping it.
   The best includes a validation point logged before any training step (the trainer's
   step-0 row, which has no reward): the reward "at" such a best is the initial training
   reward, the median of the first ``warmup_steps`` rewards, and rule 3 waits for it.

All thresholds are absolute for accuracies/reward (in [0, 1]) and relative for entropy and
length (they have model-dependent scales). No rule uses labels except the optional
validation set, which the user configures explicitly.

Not in the paper: the paper has no online alarm; these rules and their defaults are ours,
tuned on synthetic streams (tests/report/test_report_alarm.py) to stay quiet on a healthy
noisy run, and checked on the lab-world study (docs/lab-study.md, where its recall and false
alarms are measured): ``reward_rise`` is 0.05 because lab collapses raise the smoothed reward
by only 0.05-0.15 over its initial median. Missing or non-finite signals are skipped for
that step (never an error).

The trainer calls :meth:`CollapseAlarm.update` once per step with the step's metrics, logs
:meth:`AlarmState.as_metrics` (``alarm/collapse`` 1 and ``alarm/reason``) or
:meth:`CollapseAlarm.quiet_metrics` (``alarm/collapse`` 0), warns when
``AlarmState.first`` is True, and checkpoints :meth:`CollapseAlarm.state_dict` so a resumed
run continues the same alarm state.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from mgrpo.config.sections import CollapseAlarmConfig  # the thresholds: diagnostics.alarm.*

ALARM_KEY = "alarm/collapse"
REASON_KEY = "alarm/reason"
REASON_SEPARATOR = "; "

ENTROPY_KEY = "entropy/policy"
VOTE_SHARE_KEY = "label/vote_share"
LENGTH_KEY = "response/length_mean"
REWARD_KEY = "reward/mean"
VAL_KEY = "val/accuracy"

RULES = ("entropy", "length", "divergence")


@dataclass(frozen=True)
class AlarmState:
    """What :meth:`CollapseAlarm.update` returns on a step where at least one rule fires.

    rules: names of the firing rules (subset of :data:`RULES`), in rule order.
    reasons: one human-readable sentence per firing rule, with the numbers.
    first: True on the first step of the run on which any rule fired (warn once on this).
    """

    step: int
    rules: tuple[str, ...]
    reasons: tuple[str, ...]
    first: bool

    @property
    def reason(self) -> str:
        return REASON_SEPARATOR.join(self.reasons)

    def as_metrics(self) -> dict[str, Any]:
        """``{"alarm/collapse": 1, "alarm/reason": "..."}`` for metrics.jsonl."""
        return {ALARM_KEY: 1, REASON_KEY: self.reason}


def _finite(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class CollapseAlarm:
    """Stateful collapse detector; feed it every step's metrics dict in order."""

    def __init__(self, config: CollapseAlarmConfig | None = None) -> None:
        self.config = config or CollapseAlarmConfig()
        self._warm: dict[str, list[float]] = {ENTROPY_KEY: [], LENGTH_KEY: [], REWARD_KEY: []}
        self._initial: dict[str, float] = {}
        self._ema: dict[str, float] = {}
        self._streak: dict[str, int] = {rule: 0 for rule in RULES}
        self._best_val: float | None = None
        self._reward_at_best: float | None = None
        self._divergence_reason: str | None = None
        self._val_ema: float | None = None
        self._val_streak = 0
        self.first_step: int | None = None  # first step on which the alarm fired
        self.fired_steps = 0  # number of steps on which the alarm fired
        self.updates = 0  # number of update() calls

    # ---- state (checkpointed by the trainer for exact resume) ----
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; :meth:`load_state_dict` restores it exactly."""
        return {
            "config": asdict(self.config),
            "warm": {k: list(v) for k, v in self._warm.items()},
            "initial": dict(self._initial),
            "ema": dict(self._ema),
            "streak": dict(self._streak),
            "best_val": self._best_val,
            "reward_at_best": self._reward_at_best,
            "divergence_reason": self._divergence_reason,
            "val_ema": self._val_ema,
            "val_streak": self._val_streak,
            "first_step": self.first_step,
            "fired_steps": self.fired_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if asdict(self.config) != state.get("config"):
            raise ValueError(
                "CollapseAlarm.load_state_dict: saved thresholds differ from this alarm's "
                f"config ({state.get('config')} vs {asdict(self.config)})"
            )
        self._warm = {k: list(v) for k, v in state["warm"].items()}
        self._initial = dict(state["initial"])
        self._ema = dict(state["ema"])
        self._streak = {rule: int(state["streak"].get(rule, 0)) for rule in RULES}
        self._best_val = state["best_val"]
        self._reward_at_best = state["reward_at_best"]
        self._warm.setdefault(REWARD_KEY, [])
        self._divergence_reason = state["divergence_reason"]
        self._val_ema = state["val_ema"]
        self._val_streak = int(state["val_streak"])
        self.first_step = state["first_step"]
        self.fired_steps = int(state["fired_steps"])
        self.updates = int(state["updates"])

    @staticmethod
    def quiet_metrics() -> dict[str, Any]:
        """What to log on a step without an alarm."""
        return {ALARM_KEY: 0}

    @property
    def initial_values(self) -> dict[str, float]:
        """Initial (warm-up median) entropy, length and reward once known."""
        return dict(self._initial)

    # ---- update ----
    def _smooth(self, key: str, value: float | None) -> float | None:
        if value is None:
            return self._ema.get(key)
        prev = self._ema.get(key)
        w = self.config.smoothing
        self._ema[key] = value if prev is None else w * prev + (1.0 - w) * value
        return self._ema[key]

    def _warmup(self, key: str, value: float | None) -> None:
        if value is None or key in self._initial:
            return
        window = self._warm[key]
        window.append(value)
        if len(window) >= self.config.warmup_steps:
            self._initial[key] = statistics.median(window)

    def _check_divergence(self, val_raw: float | None, reward: float | None) -> None:
        """Update the best-val bookkeeping on validation steps (rule 3)."""
        if val_raw is None:
            return
        cfg = self.config
        w = cfg.val_smoothing
        val = val_raw if self._val_ema is None else w * self._val_ema + (1.0 - w) * val_raw
        self._val_ema = val
        if self._best_val is None or val > self._best_val:
            self._best_val, self._reward_at_best = val, reward
            self._divergence_reason, self._val_streak = None, 0
            return
        drop = self._best_val - val
        rise = None
        if reward is not None and self._reward_at_best is not None:
            rise = reward - self._reward_at_best
        if rise is not None and drop > cfg.val_drop and rise > cfg.reward_rise:
            self._val_streak += 1
        else:
            self._val_streak = 0
        if self._val_streak >= cfg.val_patience:
            self._divergence_reason = (
                f"val accuracy (smoothed) {val:.3f} fell {drop:.3f} below its best "
                f"{self._best_val:.3f} while training reward rose {rise:+.3f} "
                f"(margins {cfg.val_drop}, {cfg.reward_rise})"
            )
        else:
            self._divergence_reason = None

    def update(self, metrics: dict[str, Any]) -> AlarmState | None:
        """Consume one step's metrics; return an :class:`AlarmState` if any rule fires.

        ``metrics`` needs no particular key: absent or non-finite signals are skipped.
        ``step`` is taken from ``metrics["step"]`` when present, else counted.
        """
        cfg = self.config
        step_value = metrics.get("step")
        step = int(step_value) if isinstance(step_value, (int, float)) else self.updates
        self.updates += 1
        entropy_raw = _finite(metrics, ENTROPY_KEY)
        length_raw = _finite(metrics, LENGTH_KEY)
        self._warmup(ENTROPY_KEY, entropy_raw)
        self._warmup(LENGTH_KEY, length_raw)
        reward_raw = _finite(metrics, REWARD_KEY)
        self._warmup(REWARD_KEY, reward_raw)
        if self._best_val is not None and self._reward_at_best is None:
            # best set before training (step-0 row): compare against the initial reward
            self._reward_at_best = self._initial.get(REWARD_KEY)
        entropy = self._smooth(ENTROPY_KEY, entropy_raw)
        length = self._smooth(LENGTH_KEY, length_raw)
        vote = self._smooth(VOTE_SHARE_KEY, _finite(metrics, VOTE_SHARE_KEY))
        reward = self._smooth(REWARD_KEY, reward_raw)
        self._check_divergence(_finite(metrics, VAL_KEY), reward)

        candidates: dict[str, str | None] = {"entropy": None, "length": None}
        h0 = self._initial.get(ENTROPY_KEY)
        if entropy_raw is not None and h0 is not None and h0 > 0 and entropy is not None:
            if entropy < cfg.entropy_fraction * h0:
                candidates["entropy"] = (
                    f"policy entropy {entropy:.3g} fell below {cfg.entropy_fraction:g} x its "
                    f"initial value {h0:.3g}"
                )
        l0 = self._initial.get(LENGTH_KEY)
        if length_raw is not None and l0 is not None and l0 > 0 and length is not None:
            if vote is not None and vote >= cfg.vote_share_threshold:
                if length < cfg.length_fraction * l0:
                    candidates["length"] = (
                        f"vote share {vote:.3f} >= {cfg.vote_share_threshold:g} while response "
                        f"length {length:.3g} fell below {cfg.length_fraction:g} x its initial "
                        f"{l0:.3g}"
                    )
        fired_rules: list[str] = []
        reasons: list[str] = []
        for rule, reason in candidates.items():
            self._streak[rule] = self._streak[rule] + 1 if reason else 0
            if reason and self._streak[rule] >= cfg.patience:
                fired_rules.append(rule)
                reasons.append(reason)
        if self._divergence_reason:
            fired_rules.append("divergence")
            reasons.append(self._divergence_reason)
        if not fired_rules:
            return None
        first = self.first_step is None
        if first:
            self.first_step = step
        self.fired_steps += 1
        return AlarmState(step=step, rules=tuple(fired_rules), reasons=tuple(reasons), first=first)


def replay(
    records: list[dict[str, Any]], config: CollapseAlarmConfig | None = None
) -> list[AlarmState]:
    """Run a fresh alarm over a whole metrics log; the states of the steps that fired."""
    alarm = CollapseAlarm(config)
    states = []
    for record in records:
        state = alarm.update(record)
        if state is not None:
            states.append(state)
    return states
