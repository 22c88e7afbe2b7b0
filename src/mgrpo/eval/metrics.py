"""Evaluation metrics: unbiased pass@k, avg@k, maj@k over per-sample correctness.

- avg@k: mean correctness over all k samples of all problems (= pass@1 with k samples).
- pass@j (j = 1..k): mean over problems of the unbiased estimator of Chen et al. (2021),
  `1 - C(n-c, j) / C(n, j)` for n samples of which c are correct, computed in the
  product form `1 - prod_{i=n-c+1}^{n} (1 - j/i)`, which never forms a binomial
  coefficient and stays accurate for large n.
- maj@k: fraction of problems whose majority-voted answer (clusters by equivalence,
  `mgrpo.core.voting.majority_vote`) is correct; a problem whose samples all fail to
  parse counts as wrong.
- standard errors (`<metric>_stderr`): every figure above is a mean over problems of a
  per-problem value x_i (avg@k: c_i / k; pass@j: the estimator above; maj@k: 0 or 1), and
  its standard error is the sample standard deviation of the x_i over sqrt(n):
  `sqrt(sum (x_i - mean)^2 / (n - 1)) / sqrt(n)` (lm-evaluation-harness's `mean_stderr`).
  The k samples of a problem are not independent draws over problems, so they are averaged
  first (a clustered standard error). None when n < 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mgrpo.checks import check_int


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: probability that at least one of k draws (without replacement)
    from n samples, c of them correct, is correct.

    Edge cases: c == 0 -> 0.0; n - c < k -> 1.0 (every k-subset holds a correct sample).
    Raises ValueError unless 0 <= c <= n and 1 <= k <= n.
    """
    n, c, k = check_int(n, "n"), check_int(c, "c"), check_int(k, "k")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    log_fail = sum(math.log1p(-k / i) for i in range(n - c + 1, n + 1))
    return 1.0 - math.exp(log_fail)


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample std (n - 1 denominator) / sqrt(n); None for n < 2."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    variance = math.fsum((x - mean) ** 2 for x in values) / (n - 1)
    return math.sqrt(variance / n)


def summarize(
    correct: Sequence[Sequence[bool]], majority_correct: Sequence[bool] | None
) -> dict[str, float | int | None]:
    """Metrics from per-problem sample correctness (every problem has the same k samples).

    Returns n_problems, samples (k), avg@k, pass@1..pass@k, pass@k (= pass@{k}), maj@k
    (None when `majority_correct` is None, e.g. code benchmarks) and accuracy (= avg@k),
    each with its standard error under `<name>_stderr` (see the module docstring).
    """
    if not correct:
        raise ValueError("no problems to summarize")
    k = len(correct[0])
    if k < 1 or any(len(row) != k for row in correct):
        raise ValueError("every problem must have the same number (>= 1) of samples")
    counts = [sum(bool(x) for x in row) for row in correct]
    n_problems = len(correct)
    out: dict[str, float | int | None] = {"n_problems": n_problems, "samples": k}
    out["avg@k"] = sum(counts) / (n_problems * k)
    out["avg@k_stderr"] = mean_stderr([c / k for c in counts])
    for j in range(1, k + 1):
        per_problem = [pass_at_k(k, c, j) for c in counts]
        out[f"pass@{j}"] = sum(per_problem) / n_problems
        out[f"pass@{j}_stderr"] = mean_stderr(per_problem)
    out["pass@k"] = out[f"pass@{k}"]
    out["pass@k_stderr"] = out[f"pass@{k}_stderr"]
    if majority_correct is not None:
        if len(majority_correct) != n_problems:
            raise ValueError("majority_correct must have one entry per problem")
        out["maj@k"] = sum(bool(x) for x in majority_correct) / n_problems
        out["maj@k_stderr"] = mean_stderr([float(bool(x)) for x in majority_correct])
    else:
        out["maj@k"] = out["maj@k_stderr"] = None
    out["accuracy"] = out["avg@k"]
    out["accuracy_stderr"] = out["avg@k_stderr"]
    return out
