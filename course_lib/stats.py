"""How sure is a difference in accuracy? 95 % intervals and the plain-words verdicts the notebooks print.

Three situations, three estimators:

- **one run against chance or a number**: a Wilson interval for the accuracy (k correct out of n test images);
- **two runs, one seed each, the same test images**: a *paired* interval. Each test image gives
  d_i = correct_A(i) - correct_B(i) in {-1, 0, 1}; the difference in accuracy is the mean of d and its standard
  error is sd(d)/sqrt(n). Pairing uses the fact that both models saw the same images, so it is much tighter than two
  independent binomial intervals when the models agree on most images. Without per-image results it falls back on
  the unpaired interval (two binomial variances), which is conservative. When every d_i is the same (the models
  agree on every image, or one is right wherever the other is wrong) the interval comes from the "rule of three":
  the share of images that could break the pattern is at most 3/n;
- **several seeds per side**: the spread over seeds (a t interval on the per-seed differences when the seeds are
  paired, Welch's otherwise). This includes the run-to-run variation that a single test set cannot show.

A :class:`Comparison` turns the numbers into words: "ResNet-18 ahead by 13.5 points (95 % CI 9.8 to 17.2)" or "no
difference that this test set can detect (-1.3 ± 2.9 points)".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from scipy import stats as _scipy

__all__ = ["Comparison", "wilson_interval", "mean_interval", "paired_difference", "unpaired_difference",
           "seed_difference", "accuracy_verdict"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Comparison:
    """A difference A - B in top-1 points with its 95 % interval and how it was computed."""

    label_a: str
    label_b: str
    difference: float
    low: float
    high: float
    method: str
    unit: str = "points"

    @property
    def significant(self) -> bool:
        """True when the interval excludes 0."""
        return self.low > 0 or self.high < 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def words(self) -> str:
        """The verdict in plain words, with the numbers (to one decimal, or two significant digits when small)."""
        f = _fmt
        if not self.significant:
            return (f"{self.label_a} vs {self.label_b}: no difference that this test can detect "
                    f"({'+' if self.difference >= 0 else '-'}{f(abs(self.difference))} ± {f(self.half_width)} "
                    f"{self.unit}, {self.method})")
        ahead, behind = (self.label_a, self.label_b) if self.difference > 0 else (self.label_b, self.label_a)
        lo, hi = sorted((abs(self.low), abs(self.high)))
        return (f"{ahead} ahead of {behind} by {f(abs(self.difference))} {self.unit} (95 % CI {f(lo)} to {f(hi)}, "
                f"{self.method})")

    def __str__(self) -> str:
        return self.words()


def _fmt(x: float) -> str:
    """One decimal for ordinary sizes; two significant digits for small ones (0.0042 stays readable)."""
    return f"{x:.1f}" if x >= 0.1 or x == 0 else f"{x:.2g}"


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval for an accuracy of ``correct`` out of ``n``, in percent."""
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}.")
    p, z2 = correct / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return 100 * (centre - half), 100 * (centre + half)


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of the mean of two or more values (e.g. accuracies over seeds)."""
    x = torch.tensor(values, dtype=torch.float64)
    if len(x) < 2:
        raise ValueError("mean_interval needs at least two values; for one run use wilson_interval.")
    half = float(_scipy.t.ppf(0.975, len(x) - 1)) * x.std().item() / math.sqrt(len(x))
    return x.mean().item(), x.mean().item() - half, x.mean().item() + half


def paired_difference(correct_a: torch.Tensor, correct_b: torch.Tensor, label_a: str = "A",
                      label_b: str = "B") -> Comparison:
    """Difference in accuracy of two models on the same test images, from their per-image correctness (bool (n,))."""
    if correct_a.shape != correct_b.shape or correct_a.dim() != 1 or len(correct_a) < 2:
        raise ValueError(f"paired_difference needs two per-image results of the same length (n >= 2), got "
                         f"{tuple(correct_a.shape)} and {tuple(correct_b.shape)}.")
    d = correct_a.double() - correct_b.double()
    mean, se = d.mean().item(), d.std(unbiased=True).item() / math.sqrt(len(d))
    method = f"paired over {len(d):,} test images"
    if se == 0:      # every d_i is the same: the Wald interval is empty, the rule of three bounds the exceptions
        bound = 300 / len(d)
        if mean == 0:
            return Comparison(label_a, label_b, 0.0, -bound, bound, method + ", identical predictions")
        # d_i = +1 (or -1) everywhere: one model right on every image the other gets wrong.
        low, high = (100 - bound, 100.0) if mean > 0 else (-100.0, bound - 100)
        return Comparison(label_a, label_b, 100 * mean, low, high, method + ", one model right on every image")
    return Comparison(label_a, label_b, 100 * mean, 100 * (mean - Z95 * se), 100 * (mean + Z95 * se), method)


def unpaired_difference(acc_a: float, acc_b: float, n_a: int, n_b: int, label_a: str = "A",
                        label_b: str = "B") -> Comparison:
    """Difference of two accuracies (in %) on independent test sets of ``n_a`` and ``n_b`` images."""
    pa, pb = acc_a / 100, acc_b / 100
    se = math.sqrt(max(pa * (1 - pa), 0.25 / n_a) / n_a + max(pb * (1 - pb), 0.25 / n_b) / n_b)
    diff = pa - pb
    return Comparison(label_a, label_b, 100 * diff, 100 * (diff - Z95 * se), 100 * (diff + Z95 * se),
                      f"unpaired, {n_a:,} and {n_b:,} test images")


def seed_difference(acc_a: Sequence[float], acc_b: Sequence[float], label_a: str = "A", label_b: str = "B",
                    paired: bool = True, unit: str = "points", items: str = "seeds") -> Comparison:
    """Difference of means over seeds (or other ``items``, e.g. images): a t interval on the per-item differences
    (``paired``), else Welch's."""
    a, b = torch.tensor(acc_a, dtype=torch.float64), torch.tensor(acc_b, dtype=torch.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("seed_difference needs at least two seeds per side; with one seed use paired_difference.")
    if paired:
        if len(a) != len(b):
            raise ValueError("paired seeds need as many runs on each side.")
        d = a - b
        se, df = d.std().item() / math.sqrt(len(d)), len(d) - 1
    else:
        va, vb = a.var().item() / len(a), b.var().item() / len(b)
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
    diff = (a.mean() - b.mean()).item()
    t = float(_scipy.t.ppf(0.975, df))
    method = f"over {len(a)} paired {items}" if paired else f"over {len(a)} and {len(b)} {items}"
    return Comparison(label_a, label_b, diff, diff - t * se, diff + t * se, method, unit)


def accuracy_verdict(label: str, accuracy: float, n: int, num_classes: int) -> str:
    """One run's accuracy with its 95 % interval, and whether it is distinguishable from chance (1/classes)."""
    low, high = wilson_interval(round(accuracy * n / 100), n)
    chance = 100 / num_classes
    text = f"{label}: {accuracy:.1f} % (95 % CI {low:.1f} to {high:.1f}, {n:,} test images)"
    if low <= chance:
        return text + f"; not distinguishable from chance ({chance:.0f} %): this model learned nothing measurable"
    return text
