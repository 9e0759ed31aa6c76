"""Tables, curves and verdicts computed from the run records, so the words in the book change with the numbers.

Every number comes from a record that :func:`course_lib.experiments.train_run` wrote (your ``records/`` first,
then the course's records of record); the papers' numbers come from :mod:`course_lib.papers`, credited to the
source that printed them. Comparisons carry 95 % intervals and exact tests (:mod:`course_lib.stats`, the rule
in :mod:`course_lib.comparisons`): McNemar's, paired over the test images, for one seed; over seeds plus the
sampling of test images when there are several.
Families of comparisons (the ablation, the curve) are Holm-adjusted. Verdicts on what the models do inside
(rollout, attention distance, CKA) are :mod:`course_lib.internals`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .comparisons import compare, compare_groups, compare_seeds, holm_by_claim, per_image
from .data import DATASETS
from .drloc import constant_baseline, identical_cells_baseline
from .experiments import comparison_specs, curve_specs, get_record, load_records
from .experiments.plan import PAIR_VIT, comparison_and_pair
from .experiments.budget_rule import fit_verdict, train_accuracy
from .papers import LIU2021, reference_number
from .stats import (ONE_SEED, accuracy_variance, accuracy_interval, accuracy_verdict, holm_verdicts,
                    mean_interval, seed_difference)
from .tables import Table

if TYPE_CHECKING:     # names used only in annotations
    from .profiles import Profile

__all__ = ["dataset_runs", "dataset_table", "dataset_verdicts", "small_data_points",
           "curve_seeds", "small_data_table", "curve_verdicts", "gap_change", "drloc_learned", "ablation_table",
           "profiles_with_records", "provenance", "how_trained"]


# --------------------------------------------------------------------------------------------------------------
# One run, one data set

def _interval(record: dict) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95 % interval of one run's accuracy on its test set, the interval that
    :func:`course_lib.stats.accuracy_verdict` prints."""
    return accuracy_interval(record["final_test_acc"], record["test_images"])


def dataset_runs(dataset: str, profile: Profile, data_root: str | Path | None = None,
                 train_missing: bool = False, include_drloc: bool = True) -> dict[str, dict | None]:
    """{label: record or None} for the comparison (ViT, ResNet-18) and the DRLoc pair (its ViT, ViT+DRLoc): the
    pair's ViT is listed as :data:`PAIR_VIT` where it is not the comparison's (:func:`comparison_and_pair`)."""
    specs = comparison_and_pair(profile, dataset, drloc=include_drloc)
    return {label: get_record(spec, data_root, train_missing=train_missing) for label, spec in specs.items()}


def _paper_column(label: str, record: dict | None, dataset: str) -> str:
    if record is None:
        return "—"
    if label == "ViT+DRLoc":
        base, drloc = LIU2021["top1"][dataset]
        return f"{base:.2f} → {drloc:.2f} (Liu et al., Swin-T)"
    number = reference_number(record["spec"]["model"], dataset)
    return number.cite() if number else "—"


def dataset_table(dataset: str, profile: Profile, data_root: str | Path | None = None,
                  train_missing: bool = False, include_drloc: bool = True) -> Table:
    """Top-1 of our runs on one data set next to the reference numbers, with each run's 95 % interval, and beside
    it the training accuracy and the fit verdict (:func:`.experiments.budget_rule.fit_verdict`): an under-fitted
    model is named as such where its test accuracy is shown."""
    rows, runs = [], dataset_runs(dataset, profile, data_root, train_missing, include_drloc)
    for label, rec in runs.items():
        if rec is None:
            rows.append([label, None, "not run yet", None, None, _paper_column(label, rec, dataset), None, None,
                         None, None])
            continue
        low, high = _interval(rec)
        train, how = train_accuracy(rec)
        rows.append([label, rec["final_test_acc"], f"{low:.1f}–{high:.1f}",
                     None if train is None else f"{train:.1f}" + ("" if how == "clean" else " (running)"),
                     fit_verdict(rec).word, _paper_column(label, rec, dataset), f"{rec['steps']:,}",
                     f"{rec['images_per_class']:,}", f"{rec['train_seconds'] / 60:.1f} min",
                     rec["environment"]["device"]])
    shown = [r for r in runs.values() if r is not None]
    caption = _table_caption(dataset, profile, shown) + (
        ". Train top-1: on the training images without augmentation, or (running) the training loop's own on "
        "augmented images where the record predates that measurement; fit: fits its data (>= 90 %), memorised, at "
        "plateau (twice the epochs gained < 1 point of validation accuracy) or under-fitted")
    return Table(["model", "ours top-1 (%)", "95 % CI", "train top-1 (%)", "fit", "reference top-1 (%)", "steps",
                  "images / class", "train time", "device"], rows, caption=caption)


def _table_caption(dataset: str, profile: Profile, records: Sequence[dict]) -> str:
    """The data set, the profile whose runs the table shows (a fallback named as such) and their scale (issue 30:
    a caption said 'study' over the cpu fallback's runs)."""
    shown = profile.for_dataset(dataset).name
    text = f"{DATASETS[dataset].title}, profile '{shown}'"
    if shown != profile.name:
        text += f" (the fallback of '{profile.name}', which does not cover {DATASETS[dataset].title})"
    sizes = sorted({r["images_per_class"] for r in records})
    tests = sorted({r["test_images"] for r in records})
    if sizes:
        text += (f": {'/'.join(f'{n:,}' for n in sizes)} training images per class, "
                 f"{'/'.join(f'{n:,}' for n in tests)} test images")
        if any("STAND-IN" in r["test_source"] for r in records):
            text += f" (a stand-in drawn from {DATASETS[dataset].title}'s training split)"
    return text


def dataset_verdicts(dataset: str, profile: Profile, data_root: str | Path | None = None,
                     train_missing: bool = False, include_drloc: bool = True,
                     class_counts: Sequence[int] | None = None) -> list[str]:
    """Plain-words verdicts for one data set: each model against chance, ResNet-18 vs ViT, ViT+DRLoc vs its ViT.

    ``class_counts``: the test set's per-class counts, so that chance is the majority-class share (else 1/classes,
    which the words say assumes balanced classes).
    """
    runs = dataset_runs(dataset, profile, data_root, train_missing, include_drloc)
    classes = DATASETS[dataset].num_classes
    lines = [accuracy_verdict(label, r["final_test_acc"], r["test_images"], classes, class_counts)
             for label, r in runs.items() if r is not None]
    vit_label = next(iter(comparison_specs(profile, dataset)))
    pairs = [("ResNet-18", vit_label), ("ViT+DRLoc", PAIR_VIT if PAIR_VIT in runs else "ViT")]
    for a, b in pairs:
        if runs.get(a) is not None and runs.get(b) is not None:
            lines.append(compare(runs[a], runs[b]).words())
    return lines


# --------------------------------------------------------------------------------------------------------------
# The small-data curve

def _curve_records(profile: Profile, data_root, train_missing) -> dict[str, dict[int, list[dict]]]:
    """{label: {n: records}}: each model's records at each size, for the seeds it has (all of the profile's seeds
    with ``train_missing``); sizes and models without one are left out. Two models are only ever compared on the
    seeds both have (:func:`_same_seeds`)."""
    out: dict[str, dict[int, list[dict]]] = {}
    for label, by_n in curve_specs(profile).items():
        for n, specs in by_n.items():
            records = [r for r in (get_record(s, data_root, train_missing=train_missing) for s in specs) if r]
            if records:
                out.setdefault(label, {})[n] = records
    return out


def _same_seeds(a: Sequence[dict], b: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """The records of ``a`` and ``b`` whose seeds both sides have, in the same order."""
    common = {r["spec"]["seed"] for r in a} & {r["spec"]["seed"] for r in b}
    return ([r for r in a if r["spec"]["seed"] in common], [r for r in b if r["spec"]["seed"] in common])


def curve_seeds(profile: Profile, data_root: str | Path | None = None, train_missing: bool = False
                ) -> dict[int, dict[str, list[int]]]:
    """{images per class: {model label: the seeds of its point}} (see :func:`small_data_points`)."""
    out: dict[int, dict[str, list[int]]] = {}
    for label, by_n in _curve_records(profile, data_root, train_missing).items():
        for n, records in by_n.items():
            out.setdefault(n, {})[label] = [r["spec"]["seed"] for r in records]
    return dict(sorted(out.items()))


def small_data_points(profile: Profile, data_root: str | Path | None = None,
                      train_missing: bool = False) -> dict[str, list[tuple[int, float, float, float]]]:
    """{model label: [(images per class, mean accuracy, 95 % low, 95 % high), ...]} on CIFAR-10.

    The interval is over seeds and the sampling of the test images (a t interval of the mean, widened by the
    binomial variance of the test set) when there are several, else the exact interval of the single run on its test
    set. Each model's point uses the seeds it has records for (:func:`curve_seeds`).
    """
    points: dict[str, list[tuple[int, float, float, float]]] = {}
    for label, by_n in _curve_records(profile, data_root, train_missing).items():
        for n, records in sorted(by_n.items()):
            accs = [r["final_test_acc"] for r in records]
            if len(accs) >= 2:
                mean, low, high = mean_interval(accs, test_images=records[0]["test_images"])
            else:
                mean, (low, high) = accs[0], _interval(records[0])
            points.setdefault(label, []).append((n, mean, low, high))
    return points


def _seeds_words(used: list[int]) -> str:
    return (f"{len(used)} seeds and the test images" if len(used) > 1
            else f"the test images (one seed, {used[0]})")


def small_data_table(points: dict[str, list[tuple]], caption: str = "",
                     seeds: dict[int, dict[str, list[int]]] | None = None) -> Table:
    """The small-data curve as a table: one row per size, one column per model ("mean [low, high]"), and with
    ``seeds`` (:func:`curve_seeds`) a last column saying what each row's intervals cover."""
    sizes = sorted({p[0] for pts in points.values() for p in pts})
    cells = {label: {p[0]: f"{p[1]:.1f} [{p[2]:.1f}, {p[3]:.1f}]" for p in pts} for label, pts in points.items()}
    rows = [[n] + [cells[m].get(n) for m in points] for n in sizes]
    header = ["images per class"] + list(points)
    if seeds is not None:
        header.append("interval over")
        for row, n in zip(rows, sizes):
            by_label = seeds.get(n, {})
            kinds = {tuple(v) for v in by_label.values()}
            row.append(_seeds_words(list(kinds.pop())) if len(kinds) == 1 else "; ".join(
                f"{label}: {_seeds_words(v)}" for label, v in by_label.items()))
    return Table(header, rows, caption=caption)


def curve_verdicts(profile: Profile, data_root: str | Path | None = None, train_missing: bool = False,
                   holm: bool = True) -> list[str]:
    """Per size: ResNet-18 vs the ViT, and ViT+DRLoc vs the ViT of its recipe, with 95 % intervals, paired by seed
    (:func:`compare_seeds`: significant only where every seed's exact test agrees), each claim Holm-adjusted over
    its sizes (:func:`holm_by_claim`; ``holm=False``: each on its own); then whether ResNet-18's lead changes between
    the smallest and the largest size (:func:`gap_change`)."""
    records = _curve_records(profile, data_root, train_missing)
    vit_label = next(iter(comparison_specs(profile, "cifar10")))
    pair_vit = {n: PAIR_VIT if n in records.get(PAIR_VIT, {}) else "ViT" for n in profile.curve_sizes}
    pairs = [(n, _same_seeds(records[a][n], records[b][n])) for n in profile.curve_sizes
             for a, b in [("ResNet-18", vit_label), ("ViT+DRLoc", pair_vit[n])]
             if n in records.get(a, {}) and n in records.get(b, {})]
    found = [(n, compare_seeds(*pair)[0]) for n, pair in pairs if pair[0]]
    comparisons = [c for _, c in found]
    if holm:
        comparisons = holm_by_claim(comparisons)
    lines = [f"{n:>5} per class: " + c.words() for (n, _), c in zip(found, comparisons)]
    cnn, vit = records.get("ResNet-18", {}), records.get(vit_label, {})
    paired = {n: _same_seeds(cnn[n], vit[n]) for n in sorted(set(cnn) & set(vit))}
    paired = {n: pair for n, pair in paired.items() if pair[0]}
    if len(paired) >= 2:
        small, large = min(paired), max(paired)
        lines.append(gap_change({n: a for n, (a, _) in paired.items()}, {n: b for n, (_, b) in paired.items()},
                                small, large))
    return lines


def _gaps(a: Sequence[dict], b: Sequence[dict]) -> tuple[list[float], str, str | None, float] | None:
    """A - B in points: per seed, else per test image (one seed, same test set: 100 * (correct_A - correct_B)).

    Returns (gaps, "seeds" or "test images", the test set's fingerprint, the test-set sampling variance of the
    mean gap in points squared: conservative, two binomial variances, for seeds; 0 per image, where the spread over
    the images is that sampling), or None when neither pairing is possible.
    """
    if len(a) >= 2 and len(a) == len(b):
        var = sum(accuracy_variance(sum(r["final_test_acc"] for r in side) / len(side), side[0]["test_images"])
                  for side in (a, b))
        return ([x["final_test_acc"] - y["final_test_acc"] for x, y in zip(a, b)], "seeds",
                a[0].get("test_fingerprint"), var)
    pair = per_image(a[0], b[0])
    if pair is None:
        return None
    return (100 * (pair[0].double() - pair[1].double())).tolist(), "test images", a[0]["test_fingerprint"], 0.0


def gap_change(a: dict[int, list[dict]], b: dict[int, list[dict]], small: int, large: int) -> str:
    """Does A's lead over B grow or shrink with data? The lead at ``large`` images per class minus the lead at
    ``small``, with a 95 % interval: paired over the same test images (one seed; both sizes must have been scored
    on the same test set), or over seeds plus the sampling of the test images (several).

    ``a``/``b``: {images per class: records}. Neither Zhu et al. nor Liu et al. measure data-size curves; the
    question comes from Dosovitskiy et al. (2021), who find CNNs ahead after pre-training on ImageNet (1.3 M
    images) and ViTs ahead after ImageNet-21k or JFT-300M, a scale far above this course's.
    """
    la, lb = a[small][0]["label"], b[small][0]["label"]
    gs, gl = _gaps(a[small], b[small]), _gaps(a[large], b[large])
    lead = (f"{la}'s lead over {lb}: {compare_groups(a[small], b[small]).difference:+.1f} points at {small} per "
            f"class, {compare_groups(a[large], b[large]).difference:+.1f} at {large}")
    if gs is None or gl is None or gs[1] != gl[1] or len(gs[0]) != len(gl[0]):
        return lead + " (no interval: the runs do not share their test images or seeds)"
    if gs[1] == "test images" and gs[2] != gl[2]:
        return lead + (" (no paired interval: the two sizes were scored on different test images, so their "
                       "per-image results cannot be paired; score both sizes on the same test set)")
    c = seed_difference(gl[0], gs[0], paired=True, items=gs[1], sampling_variance=gs[3] + gl[3])
    tail = f"; {ONE_SEED}" if gs[1] == "test images" else f"; {c.covers}"
    if not c.significant:
        head = c.undecided or "no change that this test can detect"
        return f"{lead}; {head} ({c.numbers()}, {c.details()}){tail}"
    return (f"{lead}; it {'widened' if c.difference > 0 else 'narrowed'} by {abs(c.difference):.1f} points "
            f"(95 % CI {min(abs(c.low), abs(c.high)):.1f} to {max(abs(c.low), abs(c.high)):.1f}, {c.details()}){tail}")


# --------------------------------------------------------------------------------------------------------------
# DRLoc and provenance

def _drloc_settings(record: dict) -> tuple[str, str]:
    """(loss, target) of a record's DRLoc term, read from its identity; the course's defaults (l1, paper) if absent."""
    for term in record.get("identity", {}).get("extra_losses", []):
        if term.get("class") == "DRLocLoss":
            settings = term["settings"]           # data (a Record reads format 1's text as data)
            return settings.get("loss", "l1"), settings.get("target", "paper")
    return "l1", "paper"


def _drloc_baselines(record: dict) -> tuple[float, float]:
    """(constant baseline, identical-cells baseline) for a record's grid and target."""
    loss, target = _drloc_settings(record)
    model = record["identity"]["model"]
    k = model["img_size"] // model["patch_size"]
    if loss != "l1" or k < 2:
        raise ValueError(f"{record['key']}: the baselines are for the L1 DRLoc loss on a grid of 2 x 2 cells or more; "
                         f"this run used loss {loss!r} on {k} x {k}.")
    return constant_baseline(k, target), identical_cells_baseline(k, target)


def drloc_learned(record: dict) -> str:
    """Did the DRLoc head learn to localise? Final DRLoc loss against two baselines that read no position: a constant
    prediction, and the stronger one that also spots a pair of identical cells (:func:`identical_cells_baseline`).

    Thresholds (stated so the verdict can be checked): above 97 % of the constant baseline, not learned; above 97 %
    of the identical-cells baseline, not learned beyond spotting identical cells; from 90 % to 97 % of it, barely;
    below 90 %, the embeddings carry relative-position information that the head reads (from the position
    embeddings or from content: the loss cannot say). The loss is the mean over the last epoch's training batches;
    a loss that is not finite (a diverged run) gets no verdict.
    """
    losses = record["history"]["extra"].get("drloc")
    if not losses:
        raise ValueError(f"{record['key']} was trained without DRLoc.")
    title = DATASETS[record["spec"]["dataset"]].title
    head = f"{record['label']} on {title} ({record['images_per_class']:,} images per class): final DRLoc loss"
    loss = float(losses[-1])
    if not math.isfinite(loss):
        return (f"{head} {loss}: the loss is not finite (training diverged), so whether the head learned cannot be "
                "judged")
    if loss < 0:
        raise ValueError(f"{record['key']}: its final DRLoc loss {loss:g} is negative, which an L1 loss never is: the "
                         "record is damaged or holds another loss. Retrain the run or restore its record.")
    constant, identical = _drloc_baselines(record)
    r0, r1 = loss / constant, loss / identical
    verdict = ("not learned: no better than predicting a constant offset" if r0 > 0.97 else
               "not learned beyond spotting identical cells: no better than a head that only tells a pair of the "
               "same cell (target 0) and otherwise predicts a constant offset" if r1 > 0.97 else
               "barely learned: only slightly better than a head that only spots identical cells" if r1 >= 0.9 else
               "learned: the embeddings carry relative-position information the head reads")
    return (f"{head} {loss:.4f} = {100 * r0:.0f} % of the constant-prediction baseline {constant:.4f} and "
            f"{100 * r1:.0f} % of the baseline that also spots identical cells {identical:.4f}; {verdict}")


def _drloc_ratio(record: dict) -> str | None:
    """The final DRLoc loss over the constant baseline, as the ablation table shows it (None without DRLoc)."""
    losses = record["history"]["extra"].get("drloc")
    if not losses:
        return None
    if not math.isfinite(losses[-1]):
        return "not finite"
    return f"{losses[-1] / _drloc_baselines(record)[0]:.2f}"


def ablation_table(records: dict[str, dict], reference: str = "no DRLoc", caption: str = "",
                   holm: bool = True) -> tuple[Table, list]:
    """(table, verdict lines) of a DRLoc ablation: each setting's accuracy and final DRLoc loss against the
    constant baseline, and its difference from the ``reference`` run with a 95 % interval; the differences are one
    family, Holm-adjusted over their number (``holm=False``: each on its own)."""
    base = records[reference]
    rows, comparisons = [], []
    for label, rec in records.items():
        low, high = _interval(rec)
        rows.append([label, rec["final_test_acc"], f"{low:.1f}–{high:.1f}", _drloc_ratio(rec)])
        if label != reference:
            comparisons.append(compare(rec, base, label, reference))
    if holm and len(comparisons) > 1:
        comparisons = holm_verdicts(comparisons)
    table = Table(["setting", "test acc (%)", "95 % CI", "final DRLoc loss / constant baseline"], rows,
                  caption=caption)
    return table, [c.words() for c in comparisons]


PROFILE_ORDER = ("gpu", "paper", "study", "study2", "gpu-samples", "paper-samples", "cpu", "smoke")


def profiles_with_records() -> list[str]:
    """Every profile that has records (yours or the course's), most complete first (:data:`PROFILE_ORDER`), then any
    other by name: a profile with records is never left out."""
    found = {r["spec"]["profile"] for r in load_records()}
    return [p for p in PROFILE_ORDER if p in found] + sorted(found - set(PROFILE_ORDER))


def provenance(records: list[dict]) -> str:
    """Where the numbers come from: data copies, devices, library versions and total training time."""
    lines = [f"{len(records)} runs."]
    for key, title in [("train_source", "training data"), ("test_source", "test data")]:
        lines += [f"{title}:"] + [f"  {s}" for s in sorted({r[key] for r in records})]
    lines += ["devices:"] + [f"  {d}" for d in sorted({r["environment"]["device"] for r in records})]
    lines += ["software:"] + [f"  torch {v}" for v in sorted({
        f"{r['environment']['torch']}, course_lib {r['environment']['course_lib']} (commit "
        f"{r['environment']['git_commit']})" for r in records})]
    lines.append(f"total training time: {sum(r['train_seconds'] for r in records) / 3600:.2f} h")
    return "\n".join(lines)


def how_trained(records: dict[str, dict]) -> str:
    """How each run of a contrast trained and whether it fits its training images ({label: record}), in words: a
    difference between two runs is about their data only where both are trained (fit verdict: fits its data,
    memorised or at plateau, :func:`.experiments.budget_rule.fit_verdict`) and it says which budget rule they share
    (the same optimiser steps, or the same epochs so that compute grows with the data)."""
    if not records:
        raise ValueError("how_trained needs at least one {label: record}.")
    lines, verdicts = [], {}
    for label, record in records.items():
        verdicts[label] = fit_verdict(record)
        lines.append(f"{label}: {record['epochs']} epochs, {record['steps']:,} optimiser steps on "
                     f"{record['train_images']:,} images; {verdicts[label].sentence}.")
    steps, epochs = [r["steps"] for r in records.values()], {r["epochs"] for r in records.values()}
    if len(records) > 1:
        per_epoch = max(r["steps"] / r["epochs"] for r in records.values())
        rule = ("They train for the same optimiser steps (to within one epoch), so the smaller set is seen many "
                "more times. " if max(steps) - min(steps) <= per_epoch else
                "They train for the same epochs, so the larger set trains for more steps (compute grows with the "
                "data). " if len(epochs) == 1 else "Their budgets differ. ")
        untrained = [label for label, v in verdicts.items() if not v.trained]
        lines.append(rule + (
            f"Under-fitted: {', '.join(untrained)}; a difference shows its budget as much as its data, so none is "
            "read as an effect of the data." if untrained else
            "Each is trained by the budget rule, so a difference between them is read as one of the data."))
    return "\n".join(lines)
