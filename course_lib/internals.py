"""Verdicts on what happens inside the models, in words computed from the numbers: how concentrated the rollout
maps are (notebook 02), how local the lower heads attend (notebooks 02 and 05), and whether the ViT's blocks line up
with the ResNet's layers in CKA (notebook 04). Accuracy tables and verdicts are :mod:`course_lib.report`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .stats import mean_interval, seed_difference, sign_flip_p, spearman
from .tables import Table

__all__ = ["concentration_verdict", "locality_verdict", "layer_correspondence", "correspondence_contrast",
           "correspondence_over_seeds", "REACH"]

# A rising order of best matches is a layer-by-layer correspondence only if the matches reach at least this far up the
# ResNet (a share of its depth): nine blocks that all match its first two layers are not (issue 30).
REACH = 0.5


def _reaches(best: Sequence[int], n_layers: int) -> bool:
    return max(best) >= REACH * (n_layers - 1)


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
    the distance under uniform attention (``distances``: (blocks, heads), in pixels, never negative; NaN for a head
    that attends to the class token only, which has no distance and is counted apart)."""
    distances = torch.as_tensor(distances, dtype=torch.float64)
    if distances.dim() != 2 or distances.numel() == 0:
        raise ValueError(f"locality_verdict needs mean attention distances of shape (blocks, heads), got "
                         f"{tuple(distances.shape)}: measure them with course_lib.locality.mean_attention_distance.")
    measured = distances[~distances.isnan()]       # NaN: a head on the class token only (none at all: a fault)
    if not (measured.numel() and torch.isfinite(measured).all() and (measured >= 0).all()) or not (
            math.isfinite(uniform) and uniform > 0):
        raise ValueError(f"locality_verdict: the distances (smallest {distances.nan_to_num(0).min():.3g}) or the "
                         f"uniform distance ({uniform}) are not finite and at least 0; a distance is never negative: "
                         "recompute them with course_lib.locality.mean_attention_distance from attention weights.")
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1] (a fraction of the uniform distance), got {share!r}.")
    lower = distances[: max(1, len(distances) // 3)]
    seen = lower[~lower.isnan()]
    if seen.numel() == 0:
        return (f"{label}: every head in blocks 1-{len(lower)} attends to the class token only, so none has an "
                "attention distance to judge.")
    apart = lower.numel() - seen.numel()
    note = f"; {apart} attend to the class token only and have no distance" if apart else ""
    return (f"{label}: {int((seen < share * uniform).sum())} of {seen.numel()} heads in blocks 1-{len(lower)} attend "
            f"locally (mean distance below {share:.0%} of the {uniform:.1f} px that uniform attention gives); their "
            f"mean distance is {seen.mean():.1f} px{note}.")


def _best_matches(matrix) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """(the matrix, its NaN mask, the ViT blocks with a finite entry, each one's best-matching ResNet layer)."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.dim() != 2 or m.numel() == 0:
        raise ValueError(f"layer_correspondence needs a (ViT blocks, ResNet layers) CKA matrix, got {tuple(m.shape)}.")
    nan = torch.isnan(m)
    blocks = [i for i in range(len(m)) if not nan[i].all()]
    return m, nan, blocks, m.masked_fill(nan, float("-inf")).argmax(dim=1)[blocks].tolist()


def layer_correspondence(matrix: torch.Tensor, label: str = "") -> str:
    """Do the ViT's blocks line up with the ResNet's layers? Spearman's rank correlation between each block's index
    and the index of its most similar ResNet layer (rows: ViT blocks, columns: ResNet layers in depth order), with
    the exact permutation p for up to 10 blocks.

    NaN entries (a layer with constant features gives CKA 0/0) are ignored and counted in the words; a block whose
    row is all NaN is left out.
    """
    m, nan, blocks, best = _best_matches(matrix)
    note = ""
    if nan.any():
        left_out = [i for i in range(len(m)) if i not in blocks]
        count = int(nan.sum())
        note = (f" ({count} NaN {'entry' if count == 1 else 'entries'} of the CKA matrix ignored" +
                (f"; blocks {left_out} have no finite entry and are left out)" if left_out else ")"))
    if len(blocks) < 3:
        return f"{label}only {len(blocks)} ViT block(s) with finite CKA: too few to judge a layer-wise order{note}."
    if len(set(best)) == 1:       # a constant sequence has no rank correlation
        return (f"{label}every ViT block is most similar to the same ResNet layer ({best[0]}): no layer-wise "
                f"order{note}.")
    rho, p = spearman(blocks, best)
    kind = "exact p" if len(blocks) <= 10 else "p"
    short = rho > 0 and p < 0.05 and not _reaches(best, m.shape[1])
    verdict = (f"an increasing order, but only within ResNet layers {min(best)}-{max(best)} of 0-{m.shape[1] - 1}: "
               "not a layer-by-layer correspondence" if short else
               "an increasing correspondence" if rho > 0 and p < 0.05 else
               "no correspondence that these blocks can show (p >= 0.05)" if p >= 0.05 else "a reversed order")
    return (f"{label}best-matching ResNet layer per ViT block {best}: Spearman rho = {rho:.2f} ({kind} = {p:.2g}), "
            f"{verdict}{note}.")


def _summary(matrix, layers: Sequence[str]) -> tuple[float, float, int, float, bool, bool]:
    """(Spearman rho, its exact p, the deepest best match's index, mean CKA, a rising order?, a rising order that
    reaches far enough up the ResNet to line up layer by layer?) of one (ViT blocks, ResNet layers) CKA matrix."""
    m, nan, blocks, best = _best_matches(matrix)
    rho, p = spearman(blocks, best) if len(blocks) >= 3 and len(set(best)) > 1 else (0.0, 1.0)
    rising = rho > 0 and p < 0.05
    return rho, p, max(best, default=0), float(m[~nan].mean()), rising, rising and _reaches(best, len(layers))


def correspondence_contrast(fewer: torch.Tensor, more: torch.Tensor, layers: Sequence[str],
                            fewer_label: str = "fewer images", more_label: str = "more images") -> str:
    """Notebook 04's contrast in words: did the ViT trained on fewer images line up less with the ResNet's layers?

    ``fewer``/``more``: (ViT blocks, ResNet layers) CKA matrices of the two ViTs against the same ResNet; ``layers``:
    the ResNet layers' names in depth order. Each side's correspondence is :func:`layer_correspondence`'s exact
    Spearman test; the two are not tested against each other, and one run each cannot show seed-to-seed variation,
    so the words never call the contrast itself significant. They also say how deep the matches reach: a rising
    order within the first few layers is not a ViT that resembles the ResNet's deeper stages.
    """
    (ra, pa, da, _, a_rises, a), (rb, pb, db, _, b_rises, b) = (_summary(m, layers) for m in (fewer, more))
    numbers = (f"Spearman rho = {ra:.2f}, exact p = {pa:.2g} with {fewer_label}; {rb:.2f}, p = {pb:.2g} with "
               f"{more_label}")
    if (a_rises or b_rises) and not (a or b):      # a rising order, but within the ResNet's first few layers
        short = [(lab, d) for lab, d, rises in ((fewer_label, da, a_rises), (more_label, db, b_rises)) if rises]
        top = max(d for _, d in short)
        head = (f"Neither ViT lines up with the ResNet layer by layer ({numbers}): the rising order of best matches "
                f"({' and '.join(f'with {lab}' for lab, _ in short)}) never goes past {layers[top]} (layer "
                f"{top + 1} of the ResNet's {len(layers)}), which is not a correspondence of depths, so there is no "
                "contrast to read")
    elif b and not a:
        head = (f"Only the ViT trained on {more_label} lines up with the ResNet layer by layer ({numbers}): the "
                "order Zhu et al.'s account predicts, less data and a weaker correspondence")
    elif a and not b:
        head = (f"Only the ViT trained on {fewer_label} lines up with the ResNet layer by layer ({numbers}): the "
                "opposite of the order Zhu et al.'s account predicts")
    elif a and b:
        head = f"Both ViTs line up with the ResNet layer by layer ({numbers})"
    else:
        head = f"Neither ViT shows a layer-wise correspondence these blocks can show ({numbers}): no contrast to read"
    return (f"{head}. The deepest best match is {layers[da]} with {fewer_label} and {layers[db]} with {more_label}, "
            f"of the ResNet's {len(layers)} layers (the last is {layers[-1]}). One run of each, and the two "
            "correlations are not tested against each other: another seed may order them differently.")


def correspondence_over_seeds(pairs: dict, layers: Sequence[str], fewer_label: str = "fewer images",
                              more_label: str = "more images") -> tuple[Table, str]:
    """Notebook 04's contrast seed by seed: ``pairs`` {seed: (fewer, more)}, two (ViT blocks, ResNet layers) CKA
    matrices per seed (the ViT trained on fewer and on more images, against the same ResNet). A table row per seed
    (each side's Spearman rho of block index against best-matching ResNet layer with its exact p, deepest match and
    mean CKA), and the words: in how many seeds each side lines up with the ResNet layer by layer, and the mean
    difference in rho (more minus fewer) over the seeds with its t interval and the exact sign-flip test. Every seed
    is measured on the same test images, so the interval covers the seeds (training subset and initialisation), not
    the sampling of images; and the sign-flip test cannot go below 2 / 2^seeds, so the words call the difference
    significant only where that exact test is below 5 % and the interval excludes 0."""
    if not pairs:
        raise ValueError("correspondence_over_seeds needs at least one seed's pair of CKA matrices.")
    rows, found = [], {}
    for seed in sorted(pairs):
        fewer, more = (_summary(m, layers) for m in pairs[seed])
        found[seed] = fewer, more
        rows.append([seed, fewer[0], f"{fewer[1]:.2g}", layers[fewer[2]], fewer[3], more[0], f"{more[1]:.2g}",
                     layers[more[2]], more[3]])
    columns = ["seed", *(f"{name} ({label})" for label in (fewer_label, more_label)
                         for name in ("rho", "exact p", "deepest match", "mean CKA"))]
    n = len(found)
    table = Table(columns, rows, digits=2, caption=f"ViT blocks against the ResNet's {len(layers)} layers, seed by "
                                                   "seed: Spearman rho of block index against best-matching layer")
    counts = [sum(f[i][5] for f in found.values()) for i in (0, 1)]
    head = (f"The ViT lines up with the ResNet layer by layer (a rising order of best matches, exact p < 0.05, "
            f"reaching past half its depth) in {counts[0]} of {n} seed(s) with {fewer_label} and {counts[1]} of {n} "
            f"with {more_label}.")
    if n < 2:
        return table, head + " One seed: no seed-level verdict."
    diffs = [found[s][1][0] - found[s][0][0] for s in sorted(found)]
    p = sign_flip_p(diffs)
    try:
        mean, low, high = mean_interval(diffs)
        interval = f"95 % t interval {low:+.2f} to {high:+.2f}"
        excludes = low > 0 or high < 0
    except ValueError:                      # every seed gives the same difference: no spread, no interval
        mean, interval, excludes = diffs[0], "no interval: every seed gives the same difference", False
    verdict = ("a difference these seeds show" if p < 0.05 and excludes else
               f"not a difference {n} seeds can show (the smallest p their sign-flip test can give is "
               f"{2 / 2 ** n:.2g})" if 2 / 2 ** n >= 0.05 else "no difference these seeds can show")
    return table, (f"{head} Spearman rho with {more_label} minus with {fewer_label}, over {n} seeds: {mean:+.2f} "
                   f"({interval}, covering the seeds, each measured on the same test images; exact sign-flip test "
                   f"p = {p:.2g}): {verdict}.")
