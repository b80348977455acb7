"""Deciding a comparison from paired differences: holds, opposite, equivalent, or undecided.

``D_s = acc(A, seed s) - acc(B, seed s)``, paired by seed (same data, initialisation, order
and augmentation). With the smallest effect of interest ``m`` (``claims.margin``) and the
error rate ``alpha`` spread over the ``K`` planned looks (``claims.looks``; each look uses
``alpha / K``, Bonferroni, so adding seeds by the plan and looking again keeps the overall
false-positive rate at ``alpha``):

* **above** (A > B): the two-sided ``1 - alpha/K`` t-interval of mean(D) lies above 0
  ("above, >= m" when it lies above ``m``);
* **below** (A < B): it lies below 0;
* **equivalent (+-m)**: the ``1 - 2 alpha/K`` interval lies inside ``(-m, m)``, i.e. both
  one-sided tests of TOST (Schuirmann 1987) reject at ``alpha/K``;
* **undecided**: anything else, with the minimum detectable effect at this n (80% power)
  and the number of pairs that would decide at the observed spread.

Fewer than ``MIN_PAIRS`` pairs decide nothing: with 2 seeds and discrete accuracies an
identical pair gives a zero-width interval. The libraries do the statistics (scipy's
t distribution, statsmodels' power solver and Holm; tests check the intervals and
p-values against scipy's ``ttest_1samp`` and statsmodels' ``ttost_paired``); this module
chooses and names. Why each choice: ``docs/claims.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_PAIRS = 3
POWER = 0.8
MAX_PAIRS = 10_000  # "seeds needed" beyond this is shown as more than it


@dataclass(frozen=True)
class Decision:
    """What the paired differences say, at the look's level ``1 - alpha``."""

    n: int
    mean: float
    sd: float
    low: float  # the 1 - alpha interval (holds / opposite)
    high: float
    eq_low: float  # the 1 - 2 alpha interval (equivalence)
    eq_high: float
    p_diff: float  # two-sided paired t-test of mean(D) = 0
    p_equiv: float  # TOST of |mean(D)| >= margin
    outcome: str  # above | below | equivalent | undecided
    mde: float  # smallest |effect| detected with 80% power at this n (top-1 points)
    n_diff: int | None  # pairs to detect an effect of ``margin`` with 80% power
    n_equiv: int | None  # pairs for 80% power to show equivalence within +-margin at D = 0
    margin: float
    alpha: float

    @property
    def above_margin(self) -> bool:
        return self.outcome == "above" and self.low > self.margin

    def label(self, above: str = "A > B", below: str = "A < B") -> str:
        """A short verdict, e.g. ``A > B``, ``equivalent (±1.0)``, ``undecided (n=3 < 3)``."""
        if self.outcome == "above":
            return f"{above}, ≥ {self.margin:g}" if self.above_margin else above
        if self.outcome == "below":
            return below
        if self.outcome == "equivalent":
            return f"equivalent (±{self.margin:g})"
        if self.n < MIN_PAIRS:
            return f"undecided ({self.n} < {MIN_PAIRS} pairs)"
        return "undecided"


def decide(diffs: Sequence[float], margin: float, alpha: float = 0.05) -> Decision:
    """The verdict on ``mean(D)`` (``alpha``: this look's two-sided error rate)."""
    d = np.asarray([x for x in diffs if math.isfinite(x)], dtype=float)
    n = len(d)
    return decide_summary(n, float(d.mean()) if n else math.nan,
                          float(d.std(ddof=1)) if n > 1 else math.nan, margin, alpha)


def decide_summary(n: int, mean: float, sd: float, margin: float,
                   alpha: float = 0.05) -> Decision:
    """:func:`decide` from the differences' count, mean and sample standard deviation: the
    t-based verdicts depend on nothing else (so a committed table can be re-decided)."""
    nan = float("nan")
    low = high = eq_low = eq_high = p_diff = p_equiv = nan
    if n > 1:
        se = sd / math.sqrt(n)
        low, high = t_interval(mean, se, n, 1 - alpha)
        eq_low, eq_high = t_interval(mean, se, n, 1 - 2 * alpha)
        p_diff, p_equiv = _p_values(mean, se, n, margin)
    outcome = "undecided"
    if n >= MIN_PAIRS:
        if low > 0:
            outcome = "above"
        elif high < 0:
            outcome = "below"
        elif -margin < eq_low and eq_high < margin:
            outcome = "equivalent"
    mde = min_detectable_effect(n, sd, alpha) if n >= 2 else nan
    n_diff = pairs_to_detect(margin, sd, alpha) if n >= 2 else None
    n_equiv = pairs_for_equivalence(margin, sd, alpha) if n >= 2 else None
    return Decision(n, mean, sd, low, high, eq_low, eq_high, p_diff, p_equiv, outcome, mde,
                    n_diff, n_equiv, margin, alpha)


def t_interval(mean: float, se: float, n: int, level: float) -> tuple[float, float]:
    """The two-sided t-interval (what scipy's ``ttest_1samp(...).confidence_interval``
    gives from the raw differences; tests/unit/test_decide.py checks they agree)."""
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return mean - half, mean + half


def _p_values(mean: float, se: float, n: int, margin: float) -> tuple[float, float]:
    """(two-sided paired t-test p, TOST p: the larger of its two one-sided p-values, as
    statsmodels' ``ttost_paired`` gives from the raw differences)."""
    if se == 0:  # identical differences
        return (1.0 if mean == 0 else 0.0), (0.0 if abs(mean) < margin else 1.0)
    df = n - 1
    p_diff = 2 * float(stats.t.sf(abs(mean) / se, df))
    p_equiv = max(float(stats.t.sf((mean + margin) / se, df)),
                  float(stats.t.sf((margin - mean) / se, df)))
    return p_diff, p_equiv


def min_detectable_effect(n: int, sd: float, alpha: float, power: float = POWER) -> float:
    """The |mean difference| a two-sided paired t-test at ``alpha`` detects with ``power``
    from ``n`` pairs whose differences spread by ``sd`` (noncentral t)."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not math.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    effect = TTestPower().solve_power(nobs=n, alpha=alpha, power=power,
                                      alternative="two-sided")
    return float(effect) * sd


def power_difference(n: int, effect: float, alpha: float) -> float:
    """Power of the two-sided paired t-test at ``alpha`` for a standardised effect."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=effect, nobs=n, alpha=alpha,
                                    alternative="two-sided"))


def power_equivalence(n: int, margin_sd: float, alpha: float) -> float:
    """Power of TOST (each one-sided test at ``alpha``) to show equivalence within
    ``+-margin_sd`` standard deviations when the true difference is 0: the noncentral-t
    lower bound ``2 P(T'(n-1, margin_sd sqrt(n)) > t_{1-alpha}) - 1`` (the two tests'
    rejections overlap almost wholly where this power matters)."""
    if n < 2:
        return 0.0
    crit = stats.t.ppf(1 - alpha, n - 1)
    one_sided = stats.nct.sf(crit, n - 1, margin_sd * math.sqrt(n))
    return max(0.0, 2 * float(one_sided) - 1)


def _smallest_n(power_at, target: float = POWER) -> int | None:
    """The smallest n >= 2 with ``power_at(n) >= target`` (power grows with n): doubling,
    then bisection, so that no power is computed far beyond the answer (statsmodels' power
    is nan for some large noncentralities)."""
    hi = 2
    while power_at(hi) < target:
        if hi >= MAX_PAIRS:
            return None
        hi = min(2 * hi, MAX_PAIRS)
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if power_at(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def pairs_to_detect(margin: float, sd: float, alpha: float) -> int | None:
    """Pairs for 80% power to detect a true difference of ``margin`` (two-sided, ``alpha``);
    None when even ``MAX_PAIRS`` would not."""
    if not math.isfinite(sd):
        return None
    if sd == 0:
        return MIN_PAIRS
    return _smallest_n(lambda n: power_difference(n, margin / sd, alpha))


def pairs_for_equivalence(margin: float, sd: float, alpha: float) -> int | None:
    """Pairs for 80% power to show equivalence within ``+-margin`` when the true difference
    is 0 (TOST at ``alpha``); None when even ``MAX_PAIRS`` would not."""
    if not math.isfinite(sd):
        return None
    if sd == 0:
        return MIN_PAIRS
    return _smallest_n(lambda n: power_equivalence(n, margin / sd, alpha))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (nan stays nan and does not count towards the family)."""
    from statsmodels.stats.multitest import multipletests

    values = list(p_values)
    known = [i for i, p in enumerate(values) if math.isfinite(p)]
    out = [float("nan")] * len(values)
    if known:
        adjusted = multipletests([values[i] for i in known], method="holm")[1]
        for i, p in zip(known, adjusted, strict=True):
            out[i] = float(p)
    return out
