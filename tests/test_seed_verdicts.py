"""Seed-level verdicts of the second study (course_lib.seed_verdicts) on records built to a known answer."""
from __future__ import annotations

import pytest
import torch

from course_lib import comparisons
from course_lib.history import pack_bits
from course_lib.seed_verdicts import seed_table, seed_verdicts

N = 10_000
BUDGETS = {"vit": (50, 5e-4), "resnet18": (50, 1e-3), "vit+drloc": (50, 5e-4)}


def record(model: str, seed: int, right: int, extra_right: int = 0, n: int = 100, drloc: bool = False,
           lr: float | None = None, clean: float = 95.0, epochs: int | None = None) -> dict:
    """A study2 record whose model gets the first ``right`` test images right, plus ``extra_right`` images from the
    end of the test set (where the others are wrong)."""
    correct = torch.zeros(N, dtype=torch.bool)
    correct[:right] = True
    if extra_right:
        correct[N - extra_right:] = True
    default_epochs, rate = BUDGETS[model]
    epochs = epochs or default_epochs
    spec = {"model": model, "dataset": "cifar10", "profile": "study2", "drloc": drloc, "train_per_class": n,
            "epochs": epochs, "lr": lr or rate, "seed": seed}
    return {"key": f"{model}-{drloc}-{n}-{seed}-{lr}-{epochs}", "spec": spec, "label": model, "epochs": epochs,
            "final_test_acc": 100 * correct.double().mean().item(), "test_images": N, "test_fingerprint": "same",
            "test_correct": pack_bits(correct), "final_train_clean_acc": clean, "final_val_acc": 50.0,
            "val_images": 1000, "history": {"train_acc": [clean]}}


def test_a_clear_lead_in_every_seed_is_significant():
    records = [record("resnet18", s, 5000, extra_right=400 + 10 * s) for s in range(3)]
    records += [record("vit", s, 5000) for s in range(3)]
    verdicts, _ = seed_verdicts(records, BUDGETS)
    (v,) = verdicts
    assert (v.size, v.label_a, v.label_b, v.seeds) == (100, "ResNet-18", "ViT", [0, 1, 2])
    assert v.significant and v.overall.low > 0 and all(c.p_value < 1e-6 for c in v.per_seed)
    assert v.words().startswith("100 images per class, 3 seeds: significant")
    assert "seed 2: +4.2 points" in v.words()


def test_an_interval_that_excludes_zero_is_not_called_significant_without_the_exact_test_in_every_seed():
    extra = [300, 300, 300, 300, 3]           # the fifth seed: 3 images apart, exact McNemar p = 0.25
    records = [record("resnet18", s, 5000, extra_right=e) for s, e in enumerate(extra)]
    records += [record("vit", s, 5000) for s in range(5)]
    (v,), _ = seed_verdicts(records, BUDGETS)
    assert v.overall.low > 0 and not v.significant and v.overall.undecided == comparisons.NOT_IN_EVERY_SEED
    assert "not called significant" in v.words()
    # The small-data curve's verdicts share the rule: the same records never get two verdicts.
    curve, _ = comparisons.compare_seeds([r for r in records if r["spec"]["model"] == "resnet18"],
                                    [r for r in records if r["spec"]["model"] == "vit"])
    assert not curve.significant and curve.undecided == comparisons.NOT_IN_EVERY_SEED


def test_one_seed_gives_the_per_image_verdict_and_an_under_fitted_side_is_named():
    records = [record("vit", 0, 5000, drloc=True, extra_right=20, clean=60.0), record("vit", 0, 5000)]
    (v,), _ = seed_verdicts(records, BUDGETS)
    assert v.label_a == "ViT + DRLoc" and v.seeds == [0] and "paired over 10,000 test images" in v.overall.method
    assert v.under_fitted == ["ViT + DRLoc"] and "under-fitted" in v.words()
    assert "under-fitted" in str(seed_table([v]))


def test_only_runs_with_the_chosen_budget_and_seeds_on_both_sides_count():
    records = [record("resnet18", s, 5000, extra_right=100) for s in range(3)]
    records += [record("vit", s, 5000) for s in range(2)]
    records += [record("vit", 2, 9000, lr=2e-3)]               # a tuning run at another rate: not the curve's run
    (v,), missing = seed_verdicts(records, BUDGETS)
    assert v.seeds == [0, 1] and all(r["spec"]["lr"] == 5e-4 for r in v.b)
    assert seed_verdicts(records, {"vit": (50, 5e-4), "resnet18": None})[0] == []


def test_only_one_comparison_and_its_budgets_when_asked():
    records = [record("resnet18", 0, 5000, extra_right=50), record("vit", 0, 5000),
               record("vit", 0, 5000, drloc=True, extra_right=5)]
    assert [v.label_a for v in seed_verdicts(records, BUDGETS)[0]] == ["ResNet-18", "ViT + DRLoc"]
    assert [v.label_a for v in seed_verdicts(records, BUDGETS, only="ViT + DRLoc")[0]] == ["ViT + DRLoc"]
    with pytest.raises(ValueError, match="only must be one of"):
        seed_verdicts(records, BUDGETS, only="ResNet")


def test_the_drloc_pair_is_compared_at_its_own_budget_not_the_vits():
    """ViT + DRLoc against the ViT trained with the same (DRLoc comparison's) budget, never against the ViT of the
    curve when the two budgets differ."""
    budgets = {**BUDGETS, "vit+drloc": (100, 5e-4)}
    records = [record("vit", s, 5000, drloc=True, epochs=100) for s in range(3)]
    records += [record("vit", s, 4000, epochs=100) for s in range(3)]        # the pair's ViT: 10 points below
    records += [record("vit", s, 5000) for s in range(3)]                    # the curve's ViT (50 epochs): level
    (v,), _ = seed_verdicts(records, budgets, only="ViT + DRLoc")
    assert [r["epochs"] for r in v.a + v.b] == [100] * 6
    assert v.overall.difference == pytest.approx(10.0) and v.significant
