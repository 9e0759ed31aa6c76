"""The results' tables and words built from records (course_lib.report); the statistics themselves are tested in
test_stats.py."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from course_lib import comparisons, internals, report, stats
from course_lib.drloc import constant_baseline, identical_cells_baseline
from course_lib.experiments import RunSpec, comparison_specs, curve_specs, drloc_specs, records
from course_lib.profiles import PROFILES
from course_lib.history import pack_bits

CPU = PROFILES["cpu"]


# ----------------------------------------------------------------------------------------------------------------
# report, from records written to a temporary work folder

def fake_record(spec, acc, correct=None, drloc=None, fingerprint="870:abc"):
    n = 870
    correct = correct if correct is not None else np.arange(n) < round(acc * n / 100)
    return {"key": spec.key, "spec": spec.to_dict(), "label": spec.label, "final_test_acc": 100 * correct.mean(),
            "epochs": 3, "steps": 45, "train_images": 1000, "images_per_class": 100, "num_classes": 10,
            "test_images": n, "test_fingerprint": fingerprint, "test_correct": pack_bits(torch.from_numpy(correct)),
            "train_seconds": 120.0, "train_source": "src-train", "test_source": "src-test",
            "history": {"extra": {"drloc": drloc or []}},
            "identity": {"model": {"img_size": 32, "patch_size": 4}},
            "environment": {"device": "dev", "torch": "t", "course_lib": "c", "git_commit": "abc"}}


def write(root, record):
    (root / "records").mkdir(exist_ok=True)
    (root / "records" / f"{record['key']}.json").write_text(json.dumps(record))


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
    assert "71.60 → 94.23" in table.rows[2][5] and table.rows[0][5] == "—"          # no SVHN reference for the ViT
    assert table.columns[3:5] == ["train top-1 (%)", "fit"] and "fit: fits its data (>= 90 %)" in table.caption
    words = report.dataset_verdicts("svhn", CPU)
    assert any(w.startswith("ResNet-18 ahead of ViT by") and "paired over 870" in w and "exact McNemar" in w
               and w.endswith(stats.ONE_SEED) for w in words)
    assert any("no difference that this test can detect" in w and "p = 1" in w for w in words)
    counts = [435, 51] + [48] * 8                                   # half the test images are of class 0
    words = report.dataset_verdicts("svhn", CPU, class_counts=counts)
    assert any(w.startswith("ViT: ") and "below chance as the class balance sets it (50 %, always answering the "
               "most common class, class 0)" in w for w in words)


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
    accs = [round((30 + s) * 8.7) / 8.7 for s in range(3)]           # the three seeds' accuracies on 870 images
    p = (np.mean(accs) / 100 * 870 + 1) / 872
    v_seed, v_test = np.var(accs, ddof=1) / 3, 1e4 * p * (1 - p) / 870
    half = scipy_stats.t.ppf(0.975, (v_seed + v_test) ** 2 / (v_seed ** 2 / 2)) * math.sqrt(v_seed + v_test)
    assert (low, high) == pytest.approx((np.mean(accs) - half, np.mean(accs) + half))
    lines = report.curve_verdicts(CPU)
    family = len(profile.curve_sizes)                    # each claim Holm-adjusted over its sizes, as the ledger
    assert any("ResNet-18 ahead of ViT by" in line and "paired seeds" in line for line in lines)
    assert sum(f"Holm-adjusted over {family} comparisons" in line for line in lines) == 2 * family
    assert all("the sampling of test images" in line for line in lines[:2 * family])
    table = report.small_data_table(points)
    assert table.rows[0][0] == 25 and "[" in table.rows[0][1]


def test_the_curve_shows_each_models_seeds_and_compares_models_on_the_seeds_both_have(tmp_path, monkeypatch):
    # The study's profile names seeds 0 and 1 but trains the second seed for few runs, and not every model at every
    # size: each point shows what exists, and no comparison pairs runs of different seeds.
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "none")
    profile = replace(CPU, name="cpu", curve_seeds=(0, 1))
    monkeypatch.setattr(report, "curve_specs", lambda p: curve_specs(profile))
    s0, s1, s2, s3 = profile.curve_sizes
    have = {s0: {"ResNet-18": [0], "ViT": [0], "ViT+DRLoc": [0]},
            s1: {"ResNet-18": [0, 1], "ViT": [0, 1], "ViT+DRLoc": [0, 1]},
            s2: {"ResNet-18": [1], "ViT": [0, 1], "ViT+DRLoc": [0]},
            s3: {"ResNet-18": [0, 1], "ViT": [0]}}                       # no ViT+DRLoc at the largest size
    rng = np.random.default_rng(5)
    for label, by_n in curve_specs(profile).items():
        for n, specs in by_n.items():
            for seed in have[n].get(label, []):
                write(tmp_path, fake_record(specs[seed], 0, rng.random(870) < 0.3 + 0.1 * seed))
    assert report.curve_seeds(CPU) == have
    points = report.small_data_points(CPU)
    assert [p[0] for p in points["ResNet-18"]] == [s0, s1, s2, s3]
    assert [p[0] for p in points["ViT+DRLoc"]] == [s0, s1, s2]
    table = report.small_data_table(points, seeds=have)
    assert table.columns[-1] == "interval over"
    assert [row[-1] for row in table.rows][:2] == ["the test images (one seed, 0)", "2 seeds and the test images"]
    assert table.rows[2][-1] == ("ResNet-18: the test images (one seed, 1); ViT: 2 seeds and the test images; "
                                 "ViT+DRLoc: the test images (one seed, 0)")
    seen, compare_groups = [], comparisons.compare_groups
    monkeypatch.setattr(comparisons, "compare_groups", lambda a, b: seen.append(
        ([r["spec"]["seed"] for r in a], [r["spec"]["seed"] for r in b])) or compare_groups(a, b))
    lines = report.curve_verdicts(CPU)
    assert all(sa == sb for sa, sb in seen) and ([1], [1]) in seen     # same seeds on both sides, always
    per_size = [line for line in lines if "per class:" in line]
    assert len(per_size) == 7                                   # 2 + 2 + 2 + ResNet-18 vs ViT at the largest size
    assert sum("paired seeds" in line for line in per_size) == 2     # only at s1 do both sides have two seeds
    # At s2 ResNet-18 (seed 1 only) meets the ViT's seed-1 run, paired over the test images, never its seed 0.
    at_s2 = [line for line in per_size if line.lstrip().startswith(f"{s2} per class: ResNet-18")]
    assert len(at_s2) == 1 and "paired over 870" in at_s2[0]
    assert lines[-1].startswith("ResNet-18's lead over ViT:") and f"at {s0} per class" in lines[-1]


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
        f"{d.mean() + half:.1f}, over 870 paired test images, t-test p < 0.0001)" in line
    assert line.endswith(stats.ONE_SEED)
    assert line.startswith(f"ResNet-18's lead over ViT: {100 * (cnn_s.mean() - vit_s.mean()):+.1f} points at 25")
    same = report.gap_change({25: a[25], 200: a[25]}, {25: b[25], 200: b[25]}, 25, 200)
    assert "cannot tell: every one of the test images gives the same difference" in same    # the same lead, per image
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


def test_gap_change_does_not_pair_two_different_test_sets():
    spec = comparison_specs(CPU, "cifar10")
    rng = np.random.default_rng(4)
    runs = {size: [fake_record(spec[m], 0, rng.random(870) < 0.3, fingerprint=f"870:{size}")
                   for m in ("ResNet-18", "ViT")] for size in (25, 200)}
    line = report.gap_change({n: [r[0]] for n, r in runs.items()}, {n: [r[1]] for n, r in runs.items()}, 25, 200)
    assert "no paired interval: the two sizes were scored on different test images" in line
    assert "paired test images" not in line


def test_gap_change_over_seeds_adds_the_test_set_variance():
    spec = comparison_specs(CPU, "cifar10")
    accs = {("ResNet-18", 25): [50, 51, 52], ("ViT", 25): [30, 31, 32], ("ResNet-18", 200): [60, 61, 62],
            ("ViT", 200): [50, 51, 52]}                      # the lead is 20 then 10 points, on every seed
    a, b = ({n: [fake_record(spec[m], x) for x in accs[m, n]] for n in (25, 200)} for m in ("ResNet-18", "ViT"))
    line = report.gap_change(a, b, 25, 200)
    real = {k: [round(x * 8.7) / 8.7 for x in v] for k, v in accs.items()}
    gaps = [(rl - vl) - (rs - vs) for rl, vl, rs, vs in zip(real["ResNet-18", 200], real["ViT", 200],
                                                          real["ResNet-18", 25], real["ViT", 25])]
    variances = [1e4 * p * (1 - p) / 870 for p in ((np.mean(v) / 100 * 870 + 1) / 872 for v in real.values())]
    v_seed, v_test = np.var(gaps, ddof=1) / 3, sum(variances)
    half = scipy_stats.t.ppf(0.975, (v_seed + v_test) ** 2 / (v_seed ** 2 / 2)) * math.sqrt(v_seed + v_test)
    assert f"it narrowed by {-np.mean(gaps):.1f} points (95 % CI {-np.mean(gaps) - half:.1f} to " \
        f"{-np.mean(gaps) + half:.1f}, over 3 paired seeds" in line
    assert line.endswith("this interval covers seed-to-seed variation and the sampling of test images")


def identical_cells_baseline_by_loops(k):
    """Enumerate all k^4 pairs; 0 for identical cells, the best constant (tried at every target value) otherwise."""
    targets = [(abs(i - p) / k, (i, j) == (p, h)) for i in range(k) for j in range(k) for p in range(k)
               for h in range(k)]
    other = [t for t, same in targets if not same]
    return min(sum(abs(t - c) for t in other) for c in set(other)) / len(targets)


def test_drloc_learned_against_both_baselines():
    spec = drloc_specs(CPU, "cifar10")["ViT+DRLoc"]
    base = constant_baseline(8)
    assert "not learned: no better than predicting a constant" in \
        report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.99 * base]))
    assert "learned: the embeddings" in report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.5 * base]))
    assert "barely" in report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.94 * base]))
    for k in (2, 3, 4, 8):
        assert identical_cells_baseline(k) == pytest.approx(identical_cells_baseline_by_loops(k))
    stronger = identical_cells_baseline_by_loops(8)              # 0.98 of the constant baseline on 8 x 8
    words = report.drloc_learned(fake_record(spec, 30, drloc=[0.3, 0.96 * base]))
    assert 0.96 * base > 0.97 * stronger and "not learned beyond spotting identical cells" in words
    assert f"{stronger:.4f}" in words
    words = report.drloc_learned(fake_record(spec, 30, drloc=[0.3, float("nan")]))
    assert "the loss is not finite" in words and "learned:" not in words and "barely" not in words


def test_the_ablation_is_holm_adjusted_over_its_comparisons():
    specs = dict(list(drloc_specs(CPU, "cifar10").items()))
    rng = np.random.default_rng(5)
    base = rng.random(870) < 0.4
    runs = {"no DRLoc": fake_record(specs["ViT"], 0, base)}
    for i in range(7):
        other = base.copy()
        other[np.flatnonzero(~base)[:14]] = True                 # 14 to 4 disagreements: p = 0.031 on its own
        other[np.flatnonzero(base)[:4]] = False
        runs[f"setting {i}"] = fake_record(specs["ViT+DRLoc"], 0, other, drloc=[0.1])
    table, lines = report.ablation_table(runs)
    assert len(lines) == 7 and all("Holm-adjusted over 7 comparisons" in line for line in lines)
    assert all("no difference that this test can detect" in line for line in lines)
    _, alone = report.ablation_table(runs, holm=False)
    assert all(line.startswith("setting") and "ahead of no DRLoc" in line for line in alone)


def test_locality_verdict_refuses_empty_or_nan_distances():
    with pytest.raises(ValueError, match="blocks, heads"):
        internals.locality_verdict(torch.zeros(0, 4), 10.0)
    with pytest.raises(ValueError, match="not finite"):
        internals.locality_verdict(torch.full((3, 4), float("nan")), 10.0)
    assert "4 of 4 heads in blocks 1-1" in internals.locality_verdict(torch.ones(3, 4), 10.0)


def test_correspondence_contrast_names_the_order_and_never_overstates_it():
    layers = [f"layer{i}" for i in range(17)]
    rising = torch.eye(17)[[1, 2, 4, 6, 8, 10, 12, 14, 16]]     # 9 blocks, matches rising from layer1 to layer16
    scattered = torch.eye(17)[[2, 2, 2, 2, 2, 2, 0, 2, 2]]       # notebook 04's 100-per-class ViT: rho = -0.27
    words = internals.correspondence_contrast(scattered, rising, layers, "100/class", "500/class")
    rho, p = scipy_stats.spearmanr(range(9), [2, 2, 2, 2, 2, 2, 0, 2, 2])
    # rho as scipy computes it; the exact permutation p (0.67, not scipy's t approximation 0.48) is tested in
    # test_stats.py.
    assert f"Spearman rho = {rho:.2f}, exact p = 0.67 with 100/class" in words and round(rho, 2) == -0.27
    assert words.startswith("Only the ViT trained on 500/class lines up") and "Zhu et al.'s account predicts" in words
    assert "deepest best match is layer2 with 100/class and layer16 with 500/class, of the ResNet's 17 layers" in words
    assert "another seed may order them differently" in words and "significant" not in words
    assert "opposite" in internals.correspondence_contrast(rising, scattered, layers)
    assert internals.correspondence_contrast(rising, rising, layers).startswith("Both ViTs line up")
    flat = torch.eye(17)[[3] * 9]                                  # every block matches one layer: no order
    assert internals.correspondence_contrast(flat, scattered, layers).startswith("Neither ViT")


def test_layer_correspondence_uses_the_exact_p_and_ignores_nan():
    best = [1, 0, 3, 2, 5, 4]                                      # rho = 0.83: t approximation p = 0.042, exact 0.058
    words = internals.layer_correspondence(torch.eye(6)[best])
    assert "rho = 0.83 (exact p = 0.058), no correspondence" in words
    m = torch.eye(6)
    m[2, 5] = float("nan")                                         # torch's argmax would take the NaN as the best
    words = internals.layer_correspondence(m)
    assert "[0, 1, 2, 3, 4, 5]" in words and "1 NaN entry of the CKA matrix ignored" in words
    m[4] = float("nan")
    assert "blocks [4] have no finite entry" in internals.layer_correspondence(m)


def test_scale_box_with_a_record_without_steps():
    from course_lib.experiments import describe_scale
    spec = RunSpec("vit", "svhn", CPU)
    with_steps, without = fake_record(spec, 50.0), fake_record(spec, 50.0)
    del without["steps"]
    box = describe_scale([with_steps, without])
    assert "0-45" not in box and "45 optimiser steps (1 run(s) do not record theirs)" in box
    assert "optimiser steps not recorded" in describe_scale([without])


def test_how_trained_says_which_budget_rule_two_runs_share_and_which_is_under_fitted():
    def rec(epochs, steps, images, clean, test=40.0):
        return {"epochs": epochs, "steps": steps, "train_images": images, "final_train_clean_acc": clean,
                "final_test_acc": test, "history": {"train_acc": [clean]}, "spec": {"seed": 0}}

    words = report.how_trained({"small": rec(151, 2265, 1000, 99.9, 38.9), "full": rec(29, 2262, 5000, 63.4)})
    assert "same optimiser steps (to within one epoch)" in words
    assert "small: 151 epochs, 2,265 optimiser steps on 1,000 images; memorised" in words
    assert "Under-fitted: full; a difference shows its budget as much as its data" in words
    words = report.how_trained({"small": rec(50, 800, 1000, 95.0), "full": rec(50, 3950, 5000, 91.0)})
    assert "same epochs, so the larger set trains for more steps" in words
    assert words.endswith("Each is trained by the budget rule, so a difference between them is read as one of "
                          "the data.")
