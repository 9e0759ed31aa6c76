"""Comparisons of run records, the one home of the rule that turns two models' test results into a verdict: per
test image for one seed (exact McNemar, :func:`compare`), over seeds with the sampling of the test images
(:func:`compare_groups`), and at a point of the curve paired by seed, called significant only where every seed's
exact test agrees (:func:`compare_seeds`); a claim's sizes are one Holm family (:func:`holm_by_claim`). The book's
tables (:mod:`course_lib.report`), the seed-level verdicts (:mod:`course_lib.seed_verdicts`) and the claims
ledger (:mod:`course_lib.ledger`) all use them, so the same records never get two verdicts.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from .history import unpack_bits
from .stats import (ALPHA, Comparison, holm_verdicts, paired_difference, seed_difference,
                    unpaired_difference)

__all__ = ["per_image", "compare", "compare_groups", "compare_seeds", "holm_by_claim", "NOT_IN_EVERY_SEED"]


def per_image(a: dict, b: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
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
    pair = per_image(a, b)
    if pair is not None:
        return paired_difference(*pair, la, lb)
    return unpaired_difference(a["final_test_acc"], b["final_test_acc"], a["test_images"], b["test_images"], la, lb)


def compare_groups(a: Sequence[dict], b: Sequence[dict]) -> Comparison:
    """A - B over seeds when both sides have two or more (paired by seed), with the sampling of their test images
    added; else :func:`compare` of the first."""
    if len(a) >= 2 and len(b) >= 2:
        seeds_a, seeds_b = [r["spec"]["seed"] for r in a], [r["spec"]["seed"] for r in b]
        return seed_difference([r["final_test_acc"] for r in a], [r["final_test_acc"] for r in b],
                               a[0]["label"], b[0]["label"], paired=seeds_a == seeds_b,
                               test_images=(a[0]["test_images"], b[0]["test_images"]))
    return compare(a[0], b[0])


NOT_IN_EVERY_SEED = ("not called significant: the interval excludes 0, but the exact McNemar test does not agree in "
                     "every seed")


def compare_seeds(a: Sequence[dict], b: Sequence[dict], label_a: str | None = None,
                  label_b: str | None = None) -> tuple[Comparison, list[Comparison]]:
    """A - B at one point, the records paired by seed: (the comparison over the seeds, each seed's own).

    Over the seeds with the sampling of the test images (:func:`compare_groups`), or with one seed that seed's
    paired comparison. It is called significant only where every seed's exact McNemar test agrees (p < 0.05, the
    same sign): with two or three seeds an interval alone can exclude 0 by luck of a small spread. Where it does not,
    the comparison says so (``undecided``) and gives no verdict."""
    la, lb = label_a or a[0]["label"], label_b or b[0]["label"]
    per_seed = [compare(x, y, la, lb) for x, y in zip(a, b)]
    overall = replace(compare_groups(a, b), label_a=la, label_b=lb)
    sign = overall.difference > 0
    agree = all(c.p_value is not None and c.p_value < ALPHA and (c.difference > 0) == sign for c in per_seed)
    if overall.significant and not agree:
        overall = replace(overall, undecided=NOT_IN_EVERY_SEED)
    return overall, per_seed


def holm_by_claim(comparisons: Sequence[Comparison], families: Sequence[object] | None = None) -> list[Comparison]:
    """Each claim's comparisons (the same A and B, at several sizes) Holm-adjusted as one family, as the claims
    ledger does; a claim with one comparison is left as it is. In the input order. ``families``: one key per
    comparison that names its family instead (the ledger: the study of each comparison of one claim)."""
    out = list(comparisons)
    keys = [(c.label_a, c.label_b) for c in out] if families is None else list(families)
    claims: dict[object, list[int]] = {}
    for i, key in enumerate(keys):
        claims.setdefault(key, []).append(i)
    for indices in claims.values():
        if len(indices) > 1:
            for i, adjusted in zip(indices, holm_verdicts([out[i] for i in indices])):
                out[i] = adjusted
    return out
