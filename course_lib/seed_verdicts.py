"""Seed-level verdicts of the second study (profile ``study2``): at each training-set size, ResNet-18 against the
ViT and the ViT + DRLoc against the ViT, each family trained with the budget chosen on validation data
(:mod:`course_lib.experiments.budget_rule`; the DRLoc pair, both sides, with the DRLoc comparison's budget), over the
seeds both sides have::

    a, b = records of A and of B at one size, one per seed, paired by seed (seed = training subset + initialisation)
    diff = mean(acc_a) - mean(acc_b)                    # points of top-1 accuracy on the same 10,000 test images
    interval = t interval over the paired seeds, widened by each side's binomial sampling variance of the test images
    per seed: exact McNemar on the per-image right/wrong of a and b

A difference is called **significant** only when the seed-level interval excludes 0, Holm-adjusted over the sizes of
its claim (as the claims ledger adjusts them), *and* the exact test agrees in every seed (p < 0.05, same sign): with
three seeds, an interval alone can exclude 0 by luck of a small spread. The rule is
:func:`.comparisons.compare_seeds`, which the small-data curve's verdicts and the ledger share. With one seed there
is only the per-image verdict. Beside each side, its fit verdict per seed (fits its data, memorised, at plateau,
under-fitted): a comparison where a side is under-fitted says so, and the book draws no data-size conclusion from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .experiments.budget_rule import DRLOC, choose_budget, fit_verdict
from .experiments.records import RECORDS_OF_RECORD, load_records
from .profiles import get_profile
from .comparisons import compare_seeds, holm_by_claim
from .stats import Comparison
from .tables import Table

__all__ = ["COMPARISONS", "SeedVerdict", "point_records", "seed_verdicts", "seed_table"]

# (label, model, DRLoc?, budget) of A against B: Zhu et al.'s comparison, each family with its own budget; then Liu
# et al.'s, both sides with the DRLoc comparison's budget (they differ only in the DRLoc loss)
COMPARISONS = ((("ResNet-18", "resnet18", False, "resnet18"), ("ViT", "vit", False, "vit")),
               (("ViT + DRLoc", "vit", True, DRLOC), ("ViT", "vit", False, DRLOC)))
SIZES, DRLOC_SIZES = get_profile("study2").curve_sizes, get_profile("study2").drloc_curve_sizes
LARGEST = SIZES[-1]    # the study2 curve's largest size: its runs leave train_per_class unset (the profile's default)


@dataclass
class SeedVerdict:
    """One comparison at one size: ``a``/``b`` the records paired by seed, ``overall`` over the seeds (or the one
    seed's per-image comparison), ``per_seed`` each seed's exact McNemar comparison, ``fits`` each side's fit
    verdict words per seed."""

    size: int
    label_a: str
    label_b: str
    a: list[dict]
    b: list[dict]
    overall: Comparison
    per_seed: list[Comparison] = field(default_factory=list)
    fits: dict[str, list[str]] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [r["spec"]["seed"] for r in self.a]

    @property
    def significant(self) -> bool:
        """The seed-level interval excludes 0, Holm-adjusted over the claim's sizes, and every seed's exact McNemar
        test agrees in sign at 5 % (:func:`course_lib.comparisons.compare_seeds`)."""
        return self.overall.significant

    @property
    def under_fitted(self) -> list[str]:
        return [label for label, words in self.fits.items() if "under-fitted" in words]

    def words(self) -> str:
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''}"
        head = f"significant: {self.overall.words()}" if self.significant else self.overall.words()
        mcnemar = "; ".join(f"seed {s}: {c.numbers()}, p = {c.p_value:.3g}" for s, c in zip(self.seeds, self.per_seed)
                            if c.p_value is not None)
        caveat = (f" {' and '.join(self.under_fitted)} under-fitted (by its fit verdict) in some seed: this "
                  "difference measures the training budget as much as the models." if self.under_fitted else "")
        return (f"{self.size} images per class, {seeds}: {head}. Exact McNemar per seed: {mcnemar or 'none'}."
                + caveat)


def point_records(records: list[dict], model: str, drloc: bool, size: int,
                  budget: tuple[int, float]) -> list[dict]:
    """The study2 records of one curve point trained with ``budget`` (epochs, learning rate), one per seed."""
    def matches(r: dict) -> bool:
        s = r["spec"]
        return (s["profile"] == "study2" and s["model"] == model and bool(s.get("drloc")) == drloc
                and (s.get("train_per_class") or LARGEST) == size and r["epochs"] == budget[0]
                and s.get("lr") == budget[1])
    by_seed = {r["spec"]["seed"]: r for r in records if matches(r)}
    return [by_seed[s] for s in sorted(by_seed)]


def seed_verdicts(records: list[dict] | None = None, budgets: dict[str, tuple[int, float] | None] | None = None,
                  only: str | None = None) -> tuple[list[SeedVerdict], list[str]]:
    """(the verdicts that the records allow, what is missing in words). ``budgets``: {model or DRLOC: (epochs, lr)},
    default the budgets :func:`~course_lib.experiments.budget_rule.choose_budget` chose; ``only``: the label of
    one comparison's A side ("ResNet-18" or "ViT + DRLoc"), default both."""
    labels = [a[0] for a, _ in COMPARISONS]
    if only is not None and only not in labels:
        raise ValueError(f"only must be one of {labels} or None, got {only!r}.")
    comparisons = [(a, b) for a, b in COMPARISONS if only in (None, a[0])]
    records = load_records(folders=[RECORDS_OF_RECORD]) if records is None else records
    missing, verdicts = [], []
    if budgets is None:
        budgets = {}
        for model in dict.fromkeys(side[3] for pair in comparisons for side in pair):
            budgets[model], why = choose_budget(model, records)
            if budgets[model] is None:
                missing.append(f"{model}: no budget yet ({why})")
    for size in SIZES:
        for (label_a, model_a, drloc_a, budget_a), (label_b, model_b, drloc_b, budget_b) in comparisons:
            if budgets.get(budget_a) is None or budgets.get(budget_b) is None or (drloc_a and size not in DRLOC_SIZES):
                continue
            a = point_records(records, model_a, drloc_a, size, budgets[budget_a])
            b = point_records(records, model_b, drloc_b, size, budgets[budget_b])
            shared = sorted({r["spec"]["seed"] for r in a} & {r["spec"]["seed"] for r in b})
            a, b = ([r for r in side if r["spec"]["seed"] in shared] for side in (a, b))
            if not shared:
                missing.append(f"{label_a} vs {label_b} at {size} per class: no seed trained on both sides yet")
                continue
            overall, per_seed = compare_seeds(a, b, label_a, label_b)
            fits = {label: [fit_verdict(r, records).word for r in side] for label, side in ((label_a, a), (label_b, b))}
            verdicts.append(SeedVerdict(size, label_a, label_b, a, b, overall, per_seed, fits))
    adjusted = holm_by_claim([v.overall for v in verdicts])      # each claim over its sizes, as the ledger does
    return [replace(v, overall=c) for v, c in zip(verdicts, adjusted)], missing


def seed_table(verdicts: list[SeedVerdict]) -> Table:
    """One row per comparison: the mean test and clean training accuracy of each side over its seeds, the
    difference with its interval, the verdict."""
    def mean(side: list[dict], key: str) -> float | None:
        values = [r.get(key) for r in side]
        return None if any(v is None for v in values) else sum(values) / len(values)

    def epochs(v: SeedVerdict) -> str:
        a, b = v.a[0]["epochs"], v.b[0]["epochs"]
        return f"{a}" if a == b else f"{a} / {b}"

    rows = [[v.size, f"{v.label_a} - {v.label_b}", epochs(v), ", ".join(map(str, v.seeds)),
             mean(v.a, "final_test_acc"), mean(v.a, "final_train_clean_acc"),
             mean(v.b, "final_test_acc"), mean(v.b, "final_train_clean_acc"), v.overall.numbers(),
             "significant" if v.significant else "not significant",
             "; ".join(f"{label}: {', '.join(sorted(set(words)))}" for label, words in v.fits.items())]
            for v in verdicts]
    return Table(["per class", "A - B", "epochs", "seeds", "A test %", "A clean train %", "B test %", "B clean train %",
                  "difference", "verdict", "fit"], rows,
                 caption="The second study, seed by seed (profile 'study2'; CIFAR-10 JPEG copy; all 10,000 test "
                         "images; one CPU thread per run): means over the seeds both sides have; epochs: each side's "
                         "budget (A / B where they differ; both sides of the DRLoc pair train with the DRLoc "
                         "comparison's); the interval covers the seeds and the sampling of the test images")
