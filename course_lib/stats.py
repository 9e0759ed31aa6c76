"""How sure is a difference in accuracy? 95 % intervals, exact tests and the plain-words verdicts the notebooks print.

A verdict says "ahead" only where an exact test (or the test its interval is built from) agrees, never from a
zero-width interval, and it says what its interval covers:

- **one run against chance**: the exact (Clopper-Pearson) interval for k correct out of n test images, compared with
  chance: the majority-class share when the test set's class counts are given, else 1/classes;
- **two runs, one seed each, the same test images**: McNemar's exact test. Only the images where the models disagree
  carry information: b where A alone is right, c where B alone is right. Under "no difference" b is
  Binomial(b + c, 1/2); the two-sided p is ``scipy.stats.binomtest(b, b + c, 0.5)``. The difference is
  q (2 pi - 1), with q = (b + c)/n the rate of disagreement and pi = b/(b + c) their split. The interval combines
  the exact (Clopper-Pearson) 95 % intervals of both: its ends are the extremes of q (2 pi - 1) over the two
  intervals. Its sign comes from the split alone, so it excludes 0 exactly when McNemar's p < 0.05. (Mapping the
  split's interval with q fixed at its estimate covered the difference as little as 54-66 % of the time in
  simulations where one model is right on nearly all the disagreements; the combined interval is conservative:
  at least 90 % by construction, 97-100 % in simulations.) It covers the sampling of test images, not seed-to-seed
  variation;
- **one seed each, different test images**: the unpaired (two binomial variances) interval, with Fisher's exact test;
- **several seeds per side**: a t interval on the per-seed differences (paired) or Welch's, *plus* the test-set
  sampling variance of each accuracy (p(1-p)/n_test: every seed is scored on the same test images, so the spread
  over seeds cannot show it). Without ``test_images`` the seeds alone cannot give a verdict.

Several comparisons against one reference (an ablation, a curve) are a family: :func:`holm_verdicts` adjusts their
p-values with Holm's step-down method, and the words say so.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import stats as _scipy

__all__ = ["Comparison", "wilson_interval", "clopper_pearson_interval", "mean_interval", "paired_difference",
           "mcnemar_exact", "unpaired_difference", "seed_difference", "accuracy_variance", "accuracy_interval",
           "accuracy_verdict",
           "holm_adjust", "holm_verdicts", "spearman", "sign_flip_p", "ONE_SEED"]

Z95 = 1.959963984540054
ALPHA = 0.05
EXACT_SPEARMAN_MAX = 10       # up to this many pairs the Spearman p enumerates every permutation
ONE_SEED = "one seed: this interval covers the sampling of test images, not seed-to-seed variation"


@dataclass(frozen=True)
class Comparison:
    """A difference A - B (in ``unit``, top-1 points by default) with its 95 % interval and how it was computed.

    ``p_value``: the two-sided p of ``test`` (e.g. "exact McNemar"); ``adjusted_p``/``family``: the Holm-adjusted p
    over a family of that many comparisons; ``covers``: what the interval covers (test images, seeds);
    ``undecided``: set when the data cannot give a verdict, with the reason in words.
    """

    label_a: str
    label_b: str
    difference: float
    low: float
    high: float
    method: str
    unit: str = "points"
    p_value: float | None = None
    test: str = ""
    covers: str = ""
    family: int = 1
    adjusted_p: float | None = None
    undecided: str = ""

    def __post_init__(self):
        if not all(math.isfinite(x) for x in (self.difference, self.low, self.high)):
            raise ValueError(f"{self.label_a} vs {self.label_b}: the difference or its interval is not finite "
                             f"({self.difference}, {self.low} to {self.high}); a run diverged or its accuracy is "
                             "missing (NaN). Retrain it or leave it out of the comparison.")

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0 with nonzero width, and the (Holm-adjusted) p, if any, is below 5 %."""
        if self.undecided or not self.high > self.low or not (self.low > 0 or self.high < 0):
            return False
        p = self.adjusted_p if self.adjusted_p is not None else self.p_value
        return p is None or p < ALPHA

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def details(self) -> str:
        """The method, then the test's p (and its Holm adjustment)."""
        text = self.method
        if self.p_value is not None:
            text += f", {self.test + ' ' if self.test else ''}{_fmt_p(self.p_value)}"
        if self.adjusted_p is not None:
            text += f", Holm-adjusted over {self.family} comparisons: {_fmt_p(self.adjusted_p)}"
        return text

    def numbers(self) -> str:
        """The signed difference with ± its half-width when the interval is symmetric, else the interval itself."""
        d = f"{'+' if self.difference >= 0 else '-'}{_fmt(abs(self.difference))}"
        alone = " for this comparison alone" if self.adjusted_p is not None else ""
        if abs((self.low + self.high) / 2 - self.difference) <= 1e-9 * max(1.0, abs(self.difference)):
            return f"{d} ± {_fmt(self.half_width)} {self.unit}{alone}"
        return f"{d} {self.unit}, 95 % CI {_signed(self.low)} to {_signed(self.high)}{alone}"

    def words(self) -> str:
        """The verdict in plain words, with the numbers (to one decimal, or two significant digits when small)."""
        tail = f"; {self.covers}" if self.covers else ""
        if not self.significant:
            head = self.undecided or "no difference that this test can detect"
            return f"{self.label_a} vs {self.label_b}: {head} ({self.numbers()}, {self.details()}){tail}"
        ahead, behind = (self.label_a, self.label_b) if self.difference > 0 else (self.label_b, self.label_a)
        lo, hi = sorted((abs(self.low), abs(self.high)))
        alone = " for this comparison alone" if self.adjusted_p is not None else ""
        return (f"{ahead} ahead of {behind} by {_fmt(abs(self.difference))} {self.unit} (95 % CI {_fmt(lo)} to "
                f"{_fmt(hi)}{alone}, {self.details()}){tail}")

    def __str__(self) -> str:
        return self.words()


def _fmt(x: float) -> str:
    """One decimal for ordinary sizes; two significant digits for small ones (0.0042 stays readable)."""
    return f"{x:.1f}" if x >= 0.1 or x == 0 else f"{x:.2g}"


def _signed(x: float) -> str:
    return ("-" if x < 0 else "") + _fmt(abs(x))


def _fmt_p(p: float) -> str:
    """"p = 0.0625" or "p < 0.0001"."""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.3g}"


def _finite(values, name: str, percent: bool = False) -> np.ndarray:
    """``values`` as float64, refusing NaN/inf and, with ``percent``, anything outside 0-100."""
    x = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf ({x.tolist()}): a run diverged or was never evaluated; "
                         "retrain it or leave it out.")
    if percent and ((x < 0) | (x > 100)).any():
        raise ValueError(f"{name} must be in percent, 0 to 100; got {x.tolist()}. Pass 100 * correct / n (a "
                         "value over 100 or below 0 is no accuracy: check how it was computed).")
    return x


def _count(value, name: str, minimum: int = 0) -> int:
    """A count (images, classes, disagreements) as an int: a whole number of at least ``minimum``, else a
    ValueError that names it (a raw ZeroDivisionError or scipy domain error says nothing about the cause)."""
    whole = isinstance(value, numbers.Integral) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum} (a count), got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------------------------------------------
# One accuracy

def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval for an accuracy of ``correct`` out of ``n``, in percent."""
    correct, n = _count(correct, "correct"), _count(n, "n (the number of test images)", 1)
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}.")
    p, z2 = correct / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100 * (centre - half), 100 * (centre + half)


def clopper_pearson_interval(correct: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 1 - ``alpha`` interval for ``correct`` out of ``n``, in percent. It excludes a value
    exactly when the two-sided exact binomial test (twice the smaller tail) rejects it."""
    correct, n = _count(correct, "correct"), _count(n, "n (the number of test images)", 1)
    if not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}.")
    low = _scipy.beta.ppf(alpha / 2, correct, n - correct + 1) if correct > 0 else 0.0
    high = _scipy.beta.ppf(1 - alpha / 2, correct + 1, n - correct) if correct < n else 1.0
    return 100 * float(low), 100 * float(high)


def accuracy_variance(accuracy: float, test_images: int) -> float:
    """The test-set sampling variance of one accuracy (in %), in points squared: p(1-p)/n, with p shrunk by one right
    and one wrong answer, (k + 1) / (n + 2), so that 0 % and 100 % do not claim zero variance."""
    test_images = _count(test_images, "test_images (the number of test images each accuracy was measured on)", 1)
    p = (_finite(accuracy, "accuracy", percent=True)[0] / 100 * test_images + 1) / (test_images + 2)
    return 1e4 * p * (1 - p) / test_images


def mean_interval(values: Sequence[float], test_images: int | None = None) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of the mean of two or more values (e.g. accuracies over seeds).

    With ``test_images`` the values are accuracies (in %) on a test set of that size, and the test-set sampling
    variance of the mean is added (Satterthwaite degrees of freedom): the seeds share their test images.
    """
    x = _finite(values, "values", percent=test_images is not None)
    if len(x) < 2:
        raise ValueError("mean_interval needs at least two values; for one run use clopper_pearson_interval.")
    var_seed = x.var(ddof=1) / len(x)
    extra = accuracy_variance(x.mean(), test_images) if test_images is not None else 0.0
    if var_seed + extra == 0:
        raise ValueError(f"mean_interval: the {len(x)} values are all equal ({x[0]:g}), so their spread gives no "
                         "interval (a zero-width one would claim certainty). For accuracies pass test_images= (the "
                         "test-set size) to add the sampling of test images; else more seeds are needed.")
    half = float(_scipy.t.ppf(0.975, _satterthwaite(var_seed, len(x) - 1, extra))) * math.sqrt(var_seed + extra)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def _satterthwaite(var_seed: float, df_seed: float, var_extra: float) -> float:
    """Degrees of freedom of var_seed (estimated with df_seed) plus a known var_extra (infinite df)."""
    return math.inf if var_seed == 0 else (var_seed + var_extra) ** 2 / (var_seed ** 2 / df_seed)


def _chance_words(num_classes: int, class_counts, n: int) -> tuple[float, str]:
    """(chance in %, how it is set): the majority-class share when class counts are given, else 1/classes."""
    if class_counts is None:
        return 100 / num_classes, f"1 in {num_classes}, assuming balanced classes"
    names, counts = ([f"'{k}'" for k in class_counts], list(class_counts.values())) \
        if isinstance(class_counts, Mapping) else ([f"class {i}" for i in range(len(class_counts))], list(class_counts))
    counts = [_count(c, f"class_counts[{name}]") for name, c in zip(names, counts)]
    if len(counts) != num_classes or sum(counts) != n or min(counts) < 0:
        raise ValueError(f"class_counts should be the test set's {num_classes} per-class counts summing to its {n} "
                         f"images; got {len(counts)} counts summing to {sum(counts)}.")
    top = int(np.argmax(counts))
    share = 100 * counts[top] / n
    return max(share, 100 / num_classes), f"always answering the most common class, {names[top]}"


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The exact 95 % interval (in %) of an accuracy ``accuracy`` (in %) measured on ``n`` images: the correct count
    it stands for, through :func:`clopper_pearson_interval`."""
    return clopper_pearson_interval(round(accuracy * n / 100), n)


def accuracy_verdict(label: str, accuracy: float, n: int, num_classes: int,
                     class_counts: Sequence[int] | Mapping[str, int] | None = None) -> str:
    """One run's accuracy (in %) with its exact 95 % interval over the ``n`` test images, and whether it beats chance.

    Chance is the majority-class share of the test set when ``class_counts`` (its per-class counts, a list or
    {class name: count}) is given, else 1/classes. An interval wholly below 1/classes is worse than guessing, which
    usually means a bug in the order of the labels.
    """
    accuracy = float(_finite(accuracy, f"{label}'s accuracy", percent=True)[0])
    n = _count(n, "n (the number of test images)", 1)
    num_classes = _count(num_classes, "num_classes (a classifier chooses among at least 2 classes)", 2)
    low, high = accuracy_interval(accuracy, n)
    guess = 100 / num_classes
    chance, how = _chance_words(num_classes, class_counts, n)
    text = f"{label}: {accuracy:.1f} % (95 % CI {low:.1f} to {high:.1f} over the sampling of {n:,} test images)"
    if high < guess:
        return text + (f"; below chance ({guess:.3g} %, guessing at random among {num_classes} classes): worse than "
                       "guessing, which usually means a label-order bug (predictions and labels use different class "
                       "orders, e.g. a different class list in training and test)")
    if high < chance:
        return text + (f"; below chance as the class balance sets it ({chance:.3g} %, {how}): this model learned "
                       "less than the class shares alone give")
    if low <= chance:
        return text + (f"; not distinguishable from chance ({chance:.3g} %, {how}): this model learned nothing "
                       "measurable")
    return text


# ----------------------------------------------------------------------------------------------------------------
# Two runs

def _right_wrong(x: torch.Tensor, name: str) -> torch.Tensor:
    """Per-image right/wrong results as bool (n,), refusing class predictions or probabilities."""
    x = torch.as_tensor(x)
    if x.dtype != torch.bool and not ((x == 0) | (x == 1)).all():
        raise ValueError(f"{name} must be per-image right/wrong results (bool or 0/1), not class predictions or "
                         "probabilities: pass (predictions == labels).")
    return x.bool()


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p: ``b`` images where only A is right, ``c`` where only B is (1.0 when b + c = 0)."""
    b, c = _count(b, "b (images where only A is right)"), _count(c, "c (images where only B is right)")
    return 1.0 if b + c == 0 else float(_scipy.binomtest(b, b + c, 0.5).pvalue)


def paired_difference(correct_a: torch.Tensor, correct_b: torch.Tensor, label_a: str = "A",
                      label_b: str = "B") -> Comparison:
    """Difference in accuracy of two models on the same test images, from their per-image right/wrong results
    (bool or 0/1, shape (n,)): exact McNemar test, and an interval from the exact intervals of the disagreement
    rate and of the disagreements' split, which excludes 0 exactly when the test rejects (see the module's notes)."""
    if correct_a.shape != correct_b.shape or correct_a.dim() != 1 or len(correct_a) < 2:
        raise ValueError(f"paired_difference needs two per-image results of the same length (n >= 2), got "
                         f"{tuple(correct_a.shape)} and {tuple(correct_b.shape)}.")
    a, b_ = _right_wrong(correct_a, "correct_a"), _right_wrong(correct_b, "correct_b")
    n, b, c = len(a), int((a & ~b_).sum()), int((~a & b_).sum())
    method = f"paired over {n:,} test images, {label_a} alone right on {b:,}, {label_b} alone on {c:,}"
    if b + c == 0:      # no disagreement: the exact one-sided 95 % bound on the share of images where they could
        bound = 100 * (1 - ALPHA ** (1 / n))            # differ (about 3 / n, the rule of three, for large n)
        return Comparison(label_a, label_b, 0.0, -bound, bound, f"paired over {n:,} test images, identical predictions",
                          p_value=1.0, test="exact McNemar", covers=ONE_SEED)
    m = b + c
    split_low, split_high = (x / 100 for x in clopper_pearson_interval(b, m))     # pi = b / m
    rate_low, rate_high = clopper_pearson_interval(m, n)                           # q = m / n, in percent
    low = (rate_high if split_low < 0.5 else rate_low) * (2 * split_low - 1)      # the extremes of q (2 pi - 1)
    high = (rate_high if split_high > 0.5 else rate_low) * (2 * split_high - 1)
    return Comparison(label_a, label_b, 100 * (b - c) / n, low, high, method,
                      p_value=mcnemar_exact(b, c), test="exact McNemar", covers=ONE_SEED)


def unpaired_difference(acc_a: float, acc_b: float, n_a: int, n_b: int, label_a: str = "A",
                        label_b: str = "B") -> Comparison:
    """Difference of two accuracies (in %) on independent test sets of ``n_a`` and ``n_b`` images: Wald interval,
    verdict also requiring Fisher's exact test."""
    pa, pb = _finite([acc_a, acc_b], "accuracies", percent=True) / 100
    n_a, n_b = _count(n_a, "n_a (test images of A)", 1), _count(n_b, "n_b (test images of B)", 1)
    se = math.sqrt(max(pa * (1 - pa), 0.25 / n_a) / n_a + max(pb * (1 - pb), 0.25 / n_b) / n_b)
    ka, kb = round(pa * n_a), round(pb * n_b)
    p = float(_scipy.fisher_exact([[ka, n_a - ka], [kb, n_b - kb]]).pvalue)
    diff = pa - pb
    return Comparison(label_a, label_b, 100 * diff, 100 * (diff - Z95 * se), 100 * (diff + Z95 * se),
                      f"unpaired, {n_a:,} and {n_b:,} test images", p_value=p, test="Fisher's exact",
                      covers="one seed each: this interval covers the sampling of test images, not seed-to-seed "
                             "variation")


def _seed_spread(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float]:
    """(variance of the difference of means from the spread over items, its degrees of freedom)."""
    if paired:
        if len(a) != len(b):
            raise ValueError("paired seeds need as many runs on each side; pass paired=False otherwise.")
        return (a - b).var(ddof=1) / len(a), len(a) - 1
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
    return va + vb, df


def seed_difference(acc_a: Sequence[float], acc_b: Sequence[float], label_a: str = "A", label_b: str = "B",
                    paired: bool = True, unit: str = "points", items: str = "seeds",
                    test_images: int | tuple[int, int] | None = None,
                    sampling_variance: float | None = None) -> Comparison:
    """Difference of means over seeds (or other ``items``, e.g. images): a t interval on the per-item differences
    (``paired``), else Welch's.

    Over seeds, the spread leaves out the sampling of test images (every seed is scored on the same images): give
    ``test_images`` (the test-set size, or one per side) to add each side's binomial variance (in points squared,
    conservative when the sides share the images), or ``sampling_variance`` directly. Without either, the seeds
    alone give no verdict. A zero-width interval never gives one.
    """
    a, b = _finite(acc_a, "acc_a", test_images is not None), _finite(acc_b, "acc_b", test_images is not None)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("seed_difference needs at least two seeds per side; with one seed use paired_difference.")
    if test_images is not None:
        n_a, n_b = (test_images, test_images) if isinstance(test_images, numbers.Number) else test_images
        sampling_variance = accuracy_variance(a.mean(), n_a) + accuracy_variance(b.mean(), n_b)
    var_seed, df = _seed_spread(a, b, paired)
    diff = float(a.mean() - b.mean())
    method = f"over {len(a):,} paired {items}" if paired else f"over {len(a):,} and {len(b):,} {items}"
    if items == "seeds" and sampling_variance is None:
        half = float(_scipy.t.ppf(0.975, df)) * math.sqrt(var_seed)
        return Comparison(label_a, label_b, diff, diff - half, diff + half, method, unit,
                          undecided="the seeds alone cannot tell",
                          covers="this interval covers seed-to-seed variation only: pass test_images= (the test-set "
                                 "size) to add the sampling of test images and get a verdict")
    extra = sampling_variance or 0.0
    se = math.sqrt(var_seed + extra)
    if se == 0:
        return Comparison(label_a, label_b, diff, diff, diff, method, unit,
                          undecided=f"cannot tell: every one of the {items} gives the same difference (no spread)")
    df = _satterthwaite(var_seed, df, extra)
    t, p = float(_scipy.t.ppf(0.975, df)), 2 * float(_scipy.t.sf(abs(diff) / se, df))
    covers = ("this interval covers seed-to-seed variation and the sampling of test images" if items == "seeds"
              else f"this interval covers the sampling of the {items}")
    return Comparison(label_a, label_b, diff, diff - t * se, diff + t * se, method, unit, p_value=p, test="t-test",
                      covers=covers)


# ----------------------------------------------------------------------------------------------------------------
# Families of comparisons

def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest of m is multiplied by m - i + 1
    (i from 1), then made non-decreasing and capped at 1. Reject where the adjusted p < alpha."""
    p = _finite(pvalues, "pvalues") if len(pvalues) else np.zeros(0)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}.")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def holm_verdicts(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The same comparisons as one family: each with its Holm-adjusted p, so its words say "Holm-adjusted over m
    comparisons" and its verdict comes from the adjusted p. A comparison that gave no verdict counts with p = 1."""
    missing = [f"{c.label_a} vs {c.label_b}" for c in comparisons if c.p_value is None and not c.undecided]
    if missing:
        raise ValueError(f"{missing} carry no p-value: build them with paired_difference, unpaired_difference or "
                         "seed_difference (with test_images).")
    adjusted = holm_adjust([1.0 if c.p_value is None else c.p_value for c in comparisons])
    return [replace(c, family=len(comparisons), adjusted_p=p) for c, p in zip(comparisons, adjusted)]


# ----------------------------------------------------------------------------------------------------------------
# Rank correlation

@functools.lru_cache(maxsize=1)
def _permutations(n: int) -> np.ndarray:
    """All n! permutations of range(n) as int8 (n!, n), built by inserting each new element at every position."""
    perms = np.zeros((1, 0), dtype=np.int8)
    for k in range(1, n + 1):
        m = len(perms)
        out = np.empty((m * k, k), dtype=np.int8)
        for pos in range(k):
            block = out[pos * m:(pos + 1) * m]
            block[:, :pos], block[:, pos], block[:, pos + 1:] = perms[:, :pos], k - 1, perms[:, pos:]
        perms = out
    return perms


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(rho, two-sided p) of Spearman's rank correlation, ties given average ranks.

    Up to ``EXACT_SPEARMAN_MAX`` pairs the p is exact: the share of all n! orderings of y whose |rho| is at least
    the observed one (the t approximation is anti-conservative there). Beyond, ``scipy.stats.spearmanr``.
    """
    x, y = _finite(x, "x"), _finite(y, "y")
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"spearman needs two sequences of the same length, at least 3; got {len(x)} and {len(y)}.")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("spearman: one sequence is constant, so it has no rank correlation.")
    n = len(x)
    if n > EXACT_SPEARMAN_MAX:
        r = _scipy.spearmanr(x, y)
        return float(r.statistic), float(r.pvalue)
    rx, ry = (np.rint(2 * _scipy.rankdata(v)).astype(np.int64) for v in (x, y))   # doubled ranks: integers
    rho = float(np.corrcoef(rx, ry)[0, 1])
    centre = n * (n + 1) ** 2                       # sum of (2 rx)(2 ry) when the ranks are unrelated, on average
    observed = abs(int(rx @ ry) - centre)
    perms, extreme = _permutations(n), 0
    for start in range(0, len(perms), 1 << 18):
        s = ry[perms[start:start + (1 << 18)]] @ rx
        extreme += int((np.abs(s - centre) >= observed).sum())
    return rho, extreme / len(perms)


def sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided exact p of the sign-flip test of paired differences (one per seed, say): the share of all 2^n sign
    assignments whose sum is as far from 0 as the observed one. At least 2 / 2^n: 0.25 with three seeds."""
    d = _finite(differences, "differences")
    if not 1 <= len(d) <= 20:
        raise ValueError(f"sign_flip_p enumerates 2^n sign assignments: give 1 to 20 differences, got {len(d)}.")
    signs = 1 - 2 * ((np.arange(2 ** len(d))[:, None] >> np.arange(len(d))) & 1)      # (2^n, n) of +1 / -1
    observed = abs(d.sum())
    return float((np.abs(signs @ d) >= observed - 1e-12 * max(1.0, observed)).mean())
