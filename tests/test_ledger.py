"""The claims ledger (course_lib.ledger): fit verdicts, claim verdicts on records built to a known answer, and the
book's stored copy of the ledger against the records of record."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from course_lib import ledger
from course_lib.experiments import budget_rule
from course_lib.experiments.records import RECORDS_OF_RECORD, load_records

ROOT = Path(__file__).resolve().parents[1]


def record(model="vit", dataset="cifar10", acc=50.0, train=None, clean=None, n=500, seed=0, profile="study",
           test_images=10_000, drloc=False, classes=10, per_class=None):
    spec = {"model": model, "dataset": dataset, "profile": profile, "drloc": drloc, "drloc_weight": 0.5,
            "drloc_pairs": 64, "drloc_schedule": "constant", "drloc_tokens": "pre_norm",
            "train_per_class": per_class, "recipe": "course", "epochs": None, "seed": seed}
    key = f"{dataset}-{model}{'-drloc' if drloc else ''}-n{n}-course-{profile}-s{seed}"
    r = {"key": key, "spec": spec, "label": {"vit": "ViT", "resnet18": "ResNet-18"}[model] + ("+DRLoc" if drloc else ""),
         "final_test_acc": acc, "test_images": test_images, "num_classes": classes, "images_per_class": n,
         "epochs": 30, "steps": 3000, "test_source": "official test set", "history": {"train_acc": [None, train]}}
    if clean is not None:
        r["final_train_clean_acc"] = clean
    return r


# ----------------------------------------------------------------------------------------------------------------
# Fitted?

def test_fit_verdict_prefers_the_clean_training_accuracy_and_says_which_it_used():
    r = record(acc=50, train=60.0, clean=95.0)
    assert budget_rule.train_accuracy(r) == (95.0, "clean")
    assert budget_rule.fit_verdict(r, []).word == "fits its data"
    del r["final_train_clean_acc"]
    assert budget_rule.train_accuracy(r) == (60.0, budget_rule.RUNNING)
    assert budget_rule.fit_verdict(r, []).word == "under-fitted"
    assert "running, augmented" in ledger.fit_words("ViT", [r])


@pytest.mark.parametrize("train, test, verdict", [(99.5, 40.0, "memorised"), (99.5, 90.0, "fits its data"),
                                                  (90.0, 40.0, "fits its data"), (89.9, 40.0, "under-fitted")])
def test_fit_verdict_thresholds(train, test, verdict):
    assert budget_rule.fit_verdict(record(acc=test, clean=train), []).word == verdict


def test_fit_verdict_unknown_without_a_training_accuracy():
    r = record()
    r["history"]["train_acc"] = [None]
    assert budget_rule.fit_verdict(r, []).word == "unknown"


def test_above_chance_uses_the_exact_interval():
    assert ledger.above_chance(record(acc=12.0, test_images=10_000))        # 11.4-12.7 % > 10 %
    assert not ledger.above_chance(record(acc=12.0, test_images=200))      # 7.8-17.4 % includes 10 %


# ----------------------------------------------------------------------------------------------------------------
# Claim verdicts on records with a known answer (unpaired: no per-image results)

def _entries(records, claim_start):
    return [e for e in ledger.claims_ledger(records)
            if e.claim.startswith(claim_start) and e.verdict != "not tested: no paired runs"]


def test_resnet_far_ahead_agrees_and_names_an_under_fitted_vit():
    rows = _entries([record("resnet18", acc=75, clean=97), record("vit", acc=55, clean=60)],
                    "ViT below ResNet-18 on CIFAR-10")
    assert len(rows) == 1 and rows[0].verdict.startswith("agrees at this scale")
    assert "the ViT under-fitted" in rows[0].verdict
    assert rows[0].fitted == "ResNet-18 fits its data, ViT under-fitted"
    assert rows[0].size == "500/class, 30 epochs, 1 seed, study"


def test_vit_ahead_disagrees_and_equal_models_are_undecided():
    ahead = _entries([record("resnet18", acc=50, clean=95), record("vit", acc=60, clean=95)], "ViT below")
    assert ahead[0].verdict.startswith("disagrees")
    equal = _entries([record("resnet18", acc=50, clean=95), record("vit", acc=50, clean=95)], "ViT below")
    assert equal[0].verdict == "no difference this test can detect"


def test_a_model_at_chance_is_not_tested():
    rows = _entries([record("resnet18", "svhn", acc=60, train=91, n=74, test_images=200, profile="cpu"),
                     record("vit", "svhn", acc=12, train=18, n=74, test_images=200, profile="cpu")], "ViT close")
    assert rows[0].verdict.startswith(ledger.NOT_TESTED) and "not above chance" in rows[0].verdict


def test_svhn_close_needs_fitted_models_and_a_narrow_interval():
    fitted = [record("resnet18", "svhn", acc=95.0, clean=99.0, test_images=26_032),
              record("vit", "svhn", acc=94.8, clean=98.0, test_images=26_032)]
    assert _entries(fitted, "ViT close")[0].verdict.startswith("agrees at this scale: within")
    under = [record("resnet18", "svhn", acc=95.0, clean=99.0, test_images=26_032),
             record("vit", "svhn", acc=94.8, clean=70.0, test_images=26_032)]
    assert _entries(under, "ViT close")[0].verdict.startswith(ledger.NOT_TESTED)


def test_drloc_is_paired_with_the_vit_of_the_same_setting():
    rows = _entries([record("vit", acc=50, clean=95), record("vit", acc=40, clean=95, drloc=True)], "DRLoc")
    assert len(rows) == 1 and rows[0].verdict.startswith("disagrees at this scale: DRLoc behind")


def test_several_seeds_win_the_profile_and_are_counted():
    one = [record("resnet18", acc=75, train=96), record("vit", acc=55, train=63)]
    three = [record(m, acc=a + s, clean=c, seed=s, profile="study2")
             for s in range(3) for m, a, c in (("resnet18", 80, 99), ("vit", 60, 92))]
    rows = _entries(one + three, "ViT below ResNet-18 on CIFAR-10")
    assert len(rows) == 2 and "3 seeds" in rows[0].scale and "profile 'study2'" in rows[0].scale
    assert "clean" in rows[0].fit and rows[0].verdict == "agrees at this scale: ResNet-18 ahead"
    assert "1 seed" in rows[1].scale and "profile 'study'" in rows[1].scale        # each study's rows, apart
    fewer = [dict(r, test_images=916) for r in one]                                   # fewer test images: left out
    assert len(_entries(fewer + three, "ViT below ResNet-18 on CIFAR-10")) == 1


def test_inside_claims_need_a_fitted_vit_and_a_full_data_contrast():
    small = [record("vit", acc=55, train=63)]
    cka = _entries(small, "The ViT's layer-wise CKA")[0]
    assert cka.verdict.startswith(ledger.NOT_TESTED)
    assert "under-fitted" in cka.verdict and "all 5,000 images/class" in cka.verdict
    full = [record("vit", acc=85, clean=97, n=5000), record("vit", acc=55, clean=95, n=500, per_class=500)]
    assert _entries(full, "The ViT's layer-wise CKA")[0].verdict.startswith("tested")
    assert _entries(full, "The ViT's lower layers")[0].verdict.startswith("tested")   # notebook 02 has the control


def test_no_records_is_a_clear_error():
    with pytest.raises(ValueError, match="load_records"):
        ledger.claims_ledger([])


# ----------------------------------------------------------------------------------------------------------------
# The book's stored copy

def _make_ledger():
    spec = importlib.util.spec_from_file_location("make_ledger", ROOT / "tools" / "make_ledger.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_books_ledger_is_what_the_records_of_record_give_now():
    module = _make_ledger()
    assert module.TABLE.read_text(encoding="utf-8") == module.ledger_page_text(), (
        "book/claims_table.md is out of date with course_lib/records/: run python tools/make_ledger.py")


def test_the_books_ledger_covers_every_claim_of_the_issue():
    text = (ROOT / "book" / "claims_table.md").read_text(encoding="utf-8")
    for claim in ("ViT below ResNet-18 on CIFAR-10", "ViT below ResNet-18 on CIFAR-100", "ViT close to ResNet-18 on SVHN",
                  "lower layers do not learn to attend locally", "CKA correspondence", "DRLoc improves a ViT"):
        assert claim in text
    assert len(load_records(folders=[RECORDS_OF_RECORD])) > 0


def test_study2_runs_pair_across_per_family_budgets_and_leave_the_tuning_runs_out():
    def run(model, n, seed, lr, epochs, acc, val=None, per_class=None):
        r = record(model, acc=acc, clean=95.0, n=n, seed=seed, profile="study2", per_class=per_class)
        r["spec"].update(lr=lr, epochs=epochs)
        r["key"] = f"cifar10-{model}-n{n}-e{epochs}-lr{lr}-course-study2-s{seed}"
        if val is not None:
            r["final_val_acc"] = val
        return r

    tuning = [run(m, 100, 0, lr, 50, 40.0, val=v, per_class=100)
              for m in ("vit", "resnet18") for lr, v in ((1e-3, 40.0), (5e-4, 45.0), (2e-3, 38.0))]
    final = [run("vit", n, s, 5e-4, 100, 40.0 + s, per_class=n) for n in (100, 250) for s in range(3)]
    final += [run("resnet18", n, s, 1e-3, 100, 60.0 + s, per_class=n) for n in (100, 250) for s in range(3)]
    rows = _entries(tuning + final, "ViT below ResNet-18 on CIFAR-10")
    assert [r.size for r in rows] == ["100/class, 30 epochs, 3 seeds, study2", "250/class, 30 epochs, 3 seeds, study2"]
    assert all(r.verdict.startswith("agrees at this scale") for r in rows)
    assert "lr 0.001" in rows[0].scale          # the ResNet arm's own learning rate


def test_of_several_single_runs_the_best_on_validation_is_taken():
    a = record("vit", acc=30.0, clean=95.0, per_class=100, n=100)
    b = record("vit", acc=50.0, clean=95.0, per_class=100, n=100)
    a["spec"]["lr"], b["spec"]["lr"] = 1e-3, 2e-3
    a["final_val_acc"], b["final_val_acc"] = 45.0, 40.0
    assert ledger._pick([[b], [a]]) == [a]
