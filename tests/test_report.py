"""Verdicts with intervals (course_lib.stats) and the results' tables and words built from records (course_lib.report)."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from course_lib import report, stats
from course_lib.drloc import constant_baseline
from course_lib.experiments import RunSpec, comparison_specs, curve_specs, drloc_specs, records
from course_lib.profiles import PROFILES
from course_lib.train import pack_bits

CPU = PROFILES["cpu"]


# ----------------------------------------------------------------------------------------------------------------
# stats, against independent formulas

def test_wilson_interval_against_the_formula():
    for k, n in [(0, 10), (5, 10), (290, 870), (870, 870)]:
        p, z = k / n, scipy_stats.norm.ppf(0.975)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert stats.wilson_interval(k, n) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_paired_difference_is_the_paired_t_on_the_per_image_differences():
    rng = np.random.default_rng(0)
    a = rng.random(870) < 0.47
    b = np.where(rng.random(870) < 0.8, a, rng.random(870) < 0.33)       # mostly agrees with a
    c = stats.paired_difference(torch.from_numpy(a), torch.from_numpy(b), "ResNet-18", "ViT")
    d = a.astype(float) - b.astype(float)
    se = d.std(ddof=1) / math.sqrt(len(d))
    assert c.difference == pytest.approx(100 * d.mean())
    assert (c.low, c.high) == pytest.approx((100 * (d.mean() - 1.959964 * se), 100 * (d.mean() + 1.959964 * se)))
    # Pairing is tighter than treating the two runs as independent samples.
    unpaired = stats.unpaired_difference(100 * a.mean(), 100 * b.mean(), 870, 870)
    assert c.half_width < unpaired.half_width


def test_identical_predictions_give_the_rule_of_three_interval():
    same = torch.rand(200) < 0.4
    c = stats.paired_difference(same, same.clone(), "ViT+DRLoc", "ViT")
    assert (c.difference, c.low, c.high) == (0.0, -1.5, 1.5) and "identical predictions" in c.words()


def test_one_model_right_on_every_image_is_a_100_point_lead_not_a_tie():
    right, wrong = torch.ones(50, dtype=torch.bool), torch.zeros(50, dtype=torch.bool)
    c = stats.paired_difference(right, wrong, "ResNet-18", "ViT")
    assert (c.difference, c.low, c.high) == (100.0, 94.0, 100.0) and c.significant
    assert c.words().startswith("ResNet-18 ahead of ViT by 100.0 points")
    c = stats.paired_difference(wrong, right, "ViT", "ResNet-18")
    assert (c.difference, c.low, c.high) == (-100.0, -100.0, -94.0)
    assert c.words().startswith("ResNet-18 ahead of ViT by 100.0 points (95 % CI 94.0 to 100.0")


def test_verdicts_in_words():
    ahead = stats.Comparison("ResNet-18", "ViT", 13.5, 9.8, 17.2, "paired over 870 test images")
    assert ahead.significant and ahead.words().startswith("ResNet-18 ahead of ViT by 13.5 points (95 % CI 9.8 to 17.2")
    behind = stats.Comparison("ViT+DRLoc", "ViT", -4.0, -6.0, -2.0, "x")
    assert behind.words().startswith("ViT ahead of ViT+DRLoc by 4.0 points (95 % CI 2.0 to 6.0")
    none = stats.Comparison("ViT+DRLoc", "ViT", -1.3, -4.2, 1.6, "paired over 870 test images")
    assert not none.significant and "no difference that this test can detect (-1.3 ± 2.9 points" in none.words()


def test_seed_intervals_against_scipy():
    a, b = [70.1, 71.3, 69.8], [60.2, 62.0, 61.1]
    c = stats.seed_difference(a, b, "A", "B", paired=True)
    d = np.subtract(a, b)
    low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (c.low, c.high) == pytest.approx((low, high))
    welch = stats.seed_difference(a, b, paired=False)
    t = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert welch.difference / ((welch.high - welch.difference) / scipy_stats.t.ppf(0.975, t.df)) == \
        pytest.approx(t.statistic)
    mean, lo, hi = stats.mean_interval(a)
    assert (lo, hi) == pytest.approx(scipy_stats.t.interval(0.95, 2, loc=np.mean(a), scale=scipy_stats.sem(a)))


def test_a_model_at_chance_is_called_so():
    assert "not distinguishable from chance (10 %)" in stats.accuracy_verdict("ViT", 11.5, 200, 10)
    assert "chance" not in stats.accuracy_verdict("ResNet-18", 57.5, 200, 10)


# ----------------------------------------------------------------------------------------------------------------
# report, from records written to a temporary work folder

def fake_record(spec, acc, correct=None, drloc=None):
    n = 870
    correct = correct if correct is not None else np.arange(n) < round(acc * n / 100)
    return {"key": spec.key, "spec": spec.to_dict(), "label": spec.label, "final_test_acc": 100 * correct.mean(),
            "epochs": 3, "steps": 45, "train_images": 1000, "images_per_class": 100, "num_classes": 10,
            "test_images": n, "test_fingerprint": "870:abc", "test_correct": pack_bits(torch.from_numpy(correct)),
            "train_seconds": 120.0, "train_source": "src-train", "test_source": "src-test",
            "history": {"extra": {"drloc": drloc or []}},
            "identity": {"model": {"img_size": 32, "patch_size": 4}},
            "environment": {"device": "dev", "torch": "t", "course_lib": "c", "git_commit": "abc"}}


def write(root, record):
    (root / "results").mkdir(exist_ok=True)
    (root / "results" / f"{record['key']}.json").write_text(json.dumps(record))


def test_tables_and_verdicts_come_from_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "none")   # only these records
    specs = {**comparison_specs(CPU, "svhn"), **drloc_specs(CPU, "svhn")}
    rng = np.random.default_rng(1)
    vit = rng.random(870) < 0.40
    write(tmp_path, fake_record(specs["ViT"], 0, vit))
    write(tmp_path, fake_record(specs["ResNet-18"], 0, vit | (rng.random(870) < 0.5)))
    drloc = vit.copy()                                  # disagrees on 20 images, 10 each way: no real difference
    drloc[np.flatnonzero(vit)[:10]], drloc[np.flatnonzero(~vit)[:10]] = False, True
    write(tmp_path, fake_record(specs["ViT+DRLoc"], 0, drloc))
    table = report.dataset_table("svhn", CPU)
    assert [row[0] for row in table.rows] == ["ViT", "ResNet-18", "ViT+DRLoc"]
    assert "71.60 → 94.23" in table.rows[2][3] and table.rows[0][3] == "—"          # no SVHN reference for the ViT
    words = report.dataset_verdicts("svhn", CPU)
    assert any(w.startswith("ResNet-18 ahead of ViT by") and "paired over 870" in w for w in words)
    assert any("no difference that this test can detect" in w for w in words)


def test_missing_runs_are_shown_not_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "none")
    table = report.dataset_table("cifar100", CPU)
    assert {row[2] for row in table.rows} == {"not run yet"}
    assert not (tmp_path / "checkpoints").exists()


def test_the_curve_with_seeds_and_its_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "none")
    profile = replace(CPU, name="cpu", curve_seeds=(0, 1, 2))
    monkeypatch.setattr(report, "curve_specs", lambda p: curve_specs(profile))
    base = {"ResNet-18": 50, "ViT": 30, "ViT+DRLoc": 31}
    for label, by_n in curve_specs(profile).items():
        for i, (n, specs) in enumerate(by_n.items()):
            for seed, spec in enumerate(specs):
                write(tmp_path, fake_record(spec, base[label] + i + seed))
    points = report.small_data_points(CPU)
    n0, mean, low, high = points["ViT"][0]
    assert (n0, mean) == (25, pytest.approx(31.0, abs=0.2)) and low < mean < high
    lines = report.curve_verdicts(CPU)
    assert any("ResNet-18 ahead of ViT by" in line and "paired seeds" in line for line in lines)
    table = report.small_data_table(points)
    assert table.rows[0][0] == 25 and "[" in table.rows[0][1]


def test_gap_change_is_the_paired_difference_of_the_two_leads_per_test_image():
    spec = comparison_specs(CPU, "cifar10")
    rng = np.random.default_rng(3)
    vit_s, vit_l = rng.random(870) < 0.27, rng.random(870) < 0.31
    cnn_s = vit_s | (rng.random(870) < 0.12)
    cnn_l = vit_l | (rng.random(870) < 0.35)
    a = {25: [fake_record(spec["ResNet-18"], 0, cnn_s)], 200: [fake_record(spec["ResNet-18"], 0, cnn_l)]}
    b = {25: [fake_record(spec["ViT"], 0, vit_s)], 200: [fake_record(spec["ViT"], 0, vit_l)]}
    # Independent reference: a t interval on d_i = (lead at 200)_i - (lead at 25)_i over the 870 images.
    d = 100 * ((cnn_l.astype(float) - vit_l) - (cnn_s.astype(float) - vit_s))
    half = scipy_stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    line = report.gap_change(a, b, 25, 200)
    assert d.mean() - half > 0 and f"it widened by {d.mean():.1f} points (95 % CI {d.mean() - half:.1f} to " \
        f"{d.mean() + half:.1f}, over 870 paired test images)" in line
    assert line.startswith(f"ResNet-18's lead over ViT: {100 * (cnn_s.mean() - vit_s.mean()):+.1f} points at 25")
    same = report.gap_change({25: a[25], 200: a[25]}, {25: b[25], 200: b[25]}, 25, 200)
    assert "no change that this test can detect (+0.0 ± 0.0 points" in same     # the same lead, image by image
    narrowed = report.gap_change({25: a[200], 200: a[25]}, {25: b[200], 200: b[25]}, 25, 200)
    assert f"it narrowed by {d.mean():.1f} points" in narrowed


def test_drloc_learned_against_the_constant_baseline():
    spec = drloc_specs(CPU, "cifar10")["ViT+DRLoc"]
    base = constant_baseline(8)
    assert "not learned" in report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.99 * base]))
    assert "learned: the embeddings" in report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.5 * base]))
    assert "barely" in report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.94 * base]))


def test_constant_baseline_is_the_median_predictor():
    for k in (2, 4, 8):
        d = np.abs(np.subtract.outer(np.arange(k), np.arange(k))).ravel() / k
        assert constant_baseline(k) == pytest.approx(np.abs(d - np.median(d)).mean())


def test_provenance_lists_sources_devices_and_time():
    spec = RunSpec("vit", "svhn", CPU)
    text = report.provenance([fake_record(spec, 1.0)] * 2)
    assert "2 runs." in text and "src-train" in text and "commit abc" in text and "0.07 h" in text
