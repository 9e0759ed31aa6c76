"""Tables, curves and verdicts computed from the run records, so the words in the book change with the numbers.

Every number comes from a record that :func:`course_lib.experiments.train_run` wrote (your ``results/`` first,
then the course's records of record); the papers' numbers come from :mod:`course_lib.papers`, credited to the
source that printed them. Comparisons carry 95 % intervals (:mod:`course_lib.stats`): paired over the test images
for one seed, over seeds when there are several.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
from scipy import stats as _scipy_stats

from .data import DATASETS
from .drloc import constant_baseline
from .experiments import comparison_specs, curve_specs, drloc_specs, get_record, load_results
from .papers import LIU2021, reference_number
from .stats import (accuracy_verdict, mean_interval, paired_difference, seed_difference, unpaired_difference,
                    wilson_interval)
from .tables import Table
from .train import unpack_bits

if TYPE_CHECKING:     # names used only in annotations
    from .profiles import Profile
    from .stats import Comparison

__all__ = ["compare", "compare_groups", "dataset_runs", "dataset_table", "dataset_verdicts", "small_data_points",
           "small_data_table", "curve_verdicts", "gap_change", "drloc_learned", "ablation_table",
           "concentration_verdict", "locality_verdict", "layer_correspondence", "profiles_with_records",
           "provenance"]


# --------------------------------------------------------------------------------------------------------------
# Comparisons

def _wilson(record: dict) -> tuple[float, float]:
    """The 95 % interval of one run's accuracy on its test set."""
    return wilson_interval(round(record["final_test_acc"] * record["test_images"] / 100), record["test_images"])


def _per_image(a: dict, b: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The per-image correctness (bool (n,)) of two records on the same test set, or None if either lacks it."""
    same_test = a.get("test_fingerprint") and a.get("test_fingerprint") == b.get("test_fingerprint")
    if not (same_test and a.get("test_correct") and b.get("test_correct")):
        return None
    n = a["test_images"]
    return unpack_bits(a["test_correct"], n), unpack_bits(b["test_correct"], n)


def compare(a: dict, b: dict, label_a: str | None = None, label_b: str | None = None) -> Comparison:
    """A - B in top-1 points for two records: paired over the test images when both kept them and saw the same
    test set, else unpaired. Labels default to the records' own."""
    la, lb = label_a or a["label"], label_b or b["label"]
    pair = _per_image(a, b)
    if pair is not None:
        return paired_difference(*pair, la, lb)
    return unpaired_difference(a["final_test_acc"], b["final_test_acc"], a["test_images"], b["test_images"], la, lb)


def compare_groups(a: Sequence[dict], b: Sequence[dict]) -> Comparison:
    """A - B over seeds when both sides have two or more (paired by seed), else :func:`compare` of the first."""
    if len(a) >= 2 and len(b) >= 2:
        seeds_a, seeds_b = [r["spec"]["seed"] for r in a], [r["spec"]["seed"] for r in b]
        return seed_difference([r["final_test_acc"] for r in a], [r["final_test_acc"] for r in b],
                               a[0]["label"], b[0]["label"], paired=seeds_a == seeds_b)
    return compare(a[0], b[0])


# --------------------------------------------------------------------------------------------------------------
# Per data set

def dataset_runs(dataset: str, profile: Profile, data_root: str | Path | None = None,
                 train_missing: bool = False, include_drloc: bool = True) -> dict[str, dict | None]:
    """{label: record or None} for the comparison (ViT, ResNet-18) and the DRLoc pair (its ViT, ViT+DRLoc).

    Under the course's profiles the two ViTs are one run; under ``paper`` the DRLoc pair's ViT is listed as
    "ViT (DRLoc recipe)".
    """
    specs = dict(comparison_specs(profile, dataset))
    for label, spec in (drloc_specs(profile, dataset) if include_drloc else {}).items():
        if spec not in specs.values():
            specs[label if label not in specs else f"{label} (DRLoc recipe)"] = spec
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
    """Top-1 of our runs on one data set next to the reference numbers, with each run's 95 % interval."""
    rows = []
    for label, rec in dataset_runs(dataset, profile, data_root, train_missing, include_drloc).items():
        if rec is None:
            rows.append([label, None, "not run yet", _paper_column(label, rec, dataset), None, None, None, None])
            continue
        low, high = _wilson(rec)
        rows.append([label, rec["final_test_acc"], f"{low:.1f}–{high:.1f}", _paper_column(label, rec, dataset),
                     f"{rec['steps']:,}", f"{rec['images_per_class']:,}", f"{rec['train_seconds'] / 60:.1f} min",
                     rec["environment"]["device"]])
    return Table(["model", "ours top-1 (%)", "95 % CI", "reference top-1 (%)", "steps", "images / class",
                  "train time", "device"], rows, caption=f"{DATASETS[dataset].title}, profile '{profile.name}'")


def dataset_verdicts(dataset: str, profile: Profile, data_root: str | Path | None = None,
                     train_missing: bool = False, include_drloc: bool = True) -> list[str]:
    """Plain-words verdicts for one data set: each model against chance, ResNet-18 vs ViT, ViT+DRLoc vs its ViT."""
    runs = dataset_runs(dataset, profile, data_root, train_missing, include_drloc)
    classes = DATASETS[dataset].num_classes
    lines = [accuracy_verdict(label, r["final_test_acc"], r["test_images"], classes)
             for label, r in runs.items() if r is not None]
    vit_label = next(iter(comparison_specs(profile, dataset)))
    pairs = [("ResNet-18", vit_label), ("ViT+DRLoc", "ViT (DRLoc recipe)" if "ViT (DRLoc recipe)" in runs else "ViT")]
    for a, b in pairs:
        if runs.get(a) is not None and runs.get(b) is not None:
            lines.append(compare(runs[a], runs[b]).words())
    return lines


# --------------------------------------------------------------------------------------------------------------
# The small-data curve

def _curve_records(profile: Profile, data_root, train_missing) -> dict[str, dict[int, list[dict]]]:
    out: dict[str, dict[int, list[dict]]] = {}
    for label, by_n in curve_specs(profile).items():
        for n, specs in by_n.items():
            records = [get_record(s, data_root, train_missing=train_missing) for s in specs]
            if all(r is not None for r in records):
                out.setdefault(label, {})[n] = records
    return out


def small_data_points(profile: Profile, data_root: str | Path | None = None,
                      train_missing: bool = False) -> dict[str, list[tuple[int, float, float, float]]]:
    """{model label: [(images per class, mean accuracy, 95 % low, 95 % high), ...]} on CIFAR-10.

    The interval is over seeds (a t interval of the mean) when there are several, else the Wilson interval of the
    single run on its test set. Sizes whose runs are missing are left out.
    """
    points: dict[str, list[tuple[int, float, float, float]]] = {}
    for label, by_n in _curve_records(profile, data_root, train_missing).items():
        for n, records in sorted(by_n.items()):
            accs = [r["final_test_acc"] for r in records]
            if len(accs) >= 2:
                mean, low, high = mean_interval(accs)
            else:
                mean, (low, high) = accs[0], _wilson(records[0])
            points.setdefault(label, []).append((n, mean, low, high))
    return points


def small_data_table(points: dict[str, list[tuple]], caption: str = "") -> Table:
    """The small-data curve as a table: one row per size, one column per model ("mean [low, high]")."""
    sizes = sorted({p[0] for pts in points.values() for p in pts})
    cells = {label: {p[0]: f"{p[1]:.1f} [{p[2]:.1f}, {p[3]:.1f}]" for p in pts} for label, pts in points.items()}
    return Table(["images per class"] + list(points), [[n] + [cells[m].get(n) for m in points] for n in sizes],
                 caption=caption)


def curve_verdicts(profile: Profile, data_root: str | Path | None = None, train_missing: bool = False) -> list[str]:
    """Per size: ResNet-18 vs the ViT, and ViT+DRLoc vs the ViT of its recipe, with 95 % intervals; then whether
    ResNet-18's lead changes between the smallest and the largest size (:func:`gap_change`)."""
    records = _curve_records(profile, data_root, train_missing)
    vit_label = next(iter(comparison_specs(profile, "cifar10")))
    lines = []
    for n in profile.curve_sizes:
        for a, b in [("ResNet-18", vit_label), ("ViT+DRLoc", "ViT")]:
            if n in records.get(a, {}) and n in records.get(b, {}):
                lines.append(f"{n:>5} per class: " + compare_groups(records[a][n], records[b][n]).words())
    sizes = sorted(set(records.get("ResNet-18", {})) & set(records.get(vit_label, {})))
    if len(sizes) >= 2:
        lines.append(gap_change(records["ResNet-18"], records[vit_label], sizes[0], sizes[-1]))
    return lines


def _gaps(a: Sequence[dict], b: Sequence[dict]) -> tuple[list[float], str] | None:
    """A - B in points: per test image (one seed, same test set: 100 * (correct_A - correct_B)), else per seed."""
    if len(a) >= 2 and len(a) == len(b):
        return [x["final_test_acc"] - y["final_test_acc"] for x, y in zip(a, b)], "seeds"
    pair = _per_image(a[0], b[0])
    if pair is None:
        return None
    return (100 * (pair[0].double() - pair[1].double())).tolist(), "test images"


def gap_change(a: dict[int, list[dict]], b: dict[int, list[dict]], small: int, large: int) -> str:
    """Does A's lead over B grow or shrink with data? The lead at ``large`` images per class minus the lead at
    ``small``, with a 95 % interval: paired over the same test images (one seed), or over seeds (several).

    ``a``/``b``: {images per class: records}. The papers' account predicts that a CNN's lead over a ViT is largest
    when data is scarcest, so it should shrink as the data grow.
    """
    la, lb = a[small][0]["label"], b[small][0]["label"]
    gaps_small, gaps_large = _gaps(a[small], b[small]), _gaps(a[large], b[large])
    lead = (f"{la}'s lead over {lb}: {compare_groups(a[small], b[small]).difference:+.1f} points at {small} per "
            f"class, {compare_groups(a[large], b[large]).difference:+.1f} at {large}")
    if gaps_small is None or gaps_large is None or gaps_small[1] != gaps_large[1] or \
            len(gaps_small[0]) != len(gaps_large[0]):
        return lead + " (no interval: the runs do not share their test images or seeds)"
    c = seed_difference(gaps_large[0], gaps_small[0], paired=True, items=gaps_small[1])
    if not c.significant:
        return (f"{lead}; no change that this test can detect ({c.difference:+.1f} ± {c.half_width:.1f} points, "
                f"{c.method})")
    return (f"{lead}; it {'widened' if c.difference > 0 else 'narrowed'} by {abs(c.difference):.1f} points "
            f"(95 % CI {min(abs(c.low), abs(c.high)):.1f} to {max(abs(c.low), abs(c.high)):.1f}, {c.method})")


# --------------------------------------------------------------------------------------------------------------
# DRLoc and provenance

def drloc_learned(record: dict) -> str:
    """Did the DRLoc head learn to localise? Final DRLoc loss against the constant-prediction baseline.

    Thresholds (stated so the verdict can be checked): below 90 % of the baseline the embeddings carry relative-
    position information that the head reads (from the position embeddings or from content: the loss cannot say);
    above 97 % the head does no better than a constant guess; in between, barely.
    The loss is the mean over the last epoch's training batches; the runs use the paper's targets |delta| / k on
    the ViT's k x k grid.
    """
    losses = record["history"]["extra"].get("drloc")
    if not losses:
        raise ValueError(f"{record['key']} was trained without DRLoc.")
    model = record["identity"]["model"]
    baseline = constant_baseline(model["img_size"] // model["patch_size"])
    ratio = losses[-1] / baseline
    verdict = ("learned: the embeddings carry relative-position information the head reads" if ratio < 0.9 else
               "not learned: no better than predicting a constant offset" if ratio > 0.97 else
               "barely learned: only slightly better than a constant offset")
    title = DATASETS[record["spec"]["dataset"]].title
    return (f"{record['label']} on {title} ({record['images_per_class']:,} images per class): final DRLoc loss "
            f"{losses[-1]:.4f} = {100 * ratio:.0f} % of the constant-prediction baseline {baseline:.4f}; {verdict}")


def ablation_table(records: dict[str, dict], reference: str = "no DRLoc", caption: str = "") -> tuple[Table, list]:
    """(table, verdict lines) of a DRLoc ablation: each setting's accuracy and final DRLoc loss against the
    constant baseline, and its difference from the ``reference`` run with a 95 % interval."""
    base = records[reference]
    rows, lines = [], []
    for label, rec in records.items():
        losses = rec["history"]["extra"].get("drloc")
        ratio = None
        if losses:
            model = rec["identity"]["model"]
            ratio = f"{losses[-1] / constant_baseline(model['img_size'] // model['patch_size']):.2f}"
        low, high = _wilson(rec)
        rows.append([label, rec["final_test_acc"], f"{low:.1f}–{high:.1f}", ratio])
        if label != reference:
            lines.append(compare(rec, base, label, reference).words())
    table = Table(["setting", "test acc (%)", "95 % CI", "final DRLoc loss / constant baseline"], rows,
                  caption=caption)
    return table, lines


def concentration_verdict(trained: torch.Tensor, untrained: torch.Tensor) -> str:
    """Rollout concentration (0 = uniform, 1 = one patch) per image, trained vs untrained, in percent of the way
    from uniform to a single patch, with a paired 95 % interval over the images."""
    c = seed_difference((100 * trained).tolist(), (100 * untrained).tolist(), "trained", "untrained",
                        unit="% of the way from uniform to one patch", items="images")
    return (f"Mean concentration of the final rollout: trained {100 * trained.mean():.3g} %, untrained "
            f"{100 * untrained.mean():.3g} % (0 % = uniform over the patches). {c.words()}.")


def locality_verdict(distances: torch.Tensor, uniform: float, label: str = "trained ViT",
                     share: float = 0.8) -> str:
    """How many heads of the lower third of the blocks attend locally: mean attention distance below ``share`` of
    the distance under uniform attention (``distances``: (blocks, heads), in pixels)."""
    lower = distances[: max(1, len(distances) // 3)]
    local = int((lower < share * uniform).sum())
    return (f"{label}: {local} of {lower.numel()} heads in blocks 1-{len(lower)} attend locally (mean distance "
            f"below {share:.0%} of the {uniform:.1f} px that uniform attention gives); their mean distance is "
            f"{lower.mean():.1f} px.")


def layer_correspondence(matrix: torch.Tensor, label: str = "") -> str:
    """Do the ViT's blocks line up with the ResNet's layers? Spearman's rank correlation between each block's index
    and the index of its most similar ResNet layer (rows: ViT blocks, columns: ResNet layers in depth order)."""
    best = matrix.argmax(dim=1).tolist()
    if len(set(best)) == 1:       # a constant sequence has no rank correlation
        return f"{label}every ViT block is most similar to the same ResNet layer ({best[0]}): no layer-wise order."
    rho, p = _scipy_stats.spearmanr(range(len(best)), best)
    verdict = ("an increasing correspondence" if rho > 0 and p < 0.05 else
               "no correspondence that these blocks can show (p >= 0.05)" if p >= 0.05 else "a reversed order")
    return (f"{label}best-matching ResNet layer per ViT block {best}: Spearman rho = {rho:.2f} (p = {p:.2g}), "
            f"{verdict}.")


def profiles_with_records() -> list[str]:
    """Profiles that have records (yours or the course's), most complete first: gpu, paper, cpu, smoke."""
    found = {r["spec"]["profile"] for r in load_results()}
    return [p for p in ("gpu", "paper", "cpu", "smoke") if p in found]


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
