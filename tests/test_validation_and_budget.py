"""The second study's validation split, clean training accuracy and budget rule (issue 28)."""
from __future__ import annotations

import copy

import pytest
import torch

from course_lib.data import hold_out, subset
from course_lib.experiments import budget_rule as br
from course_lib.experiments.runs import VALIDATION_SEED, RunSpec, load_data, run_identity, training_config
from conftest import tiny_vit
from course_lib.evaluation import evaluate
from course_lib.profiles import PROFILES
from course_lib.train import fit


# --------------------------------------------------------------------------------------------------------------
# The validation split

def test_hold_out_is_disjoint_stratified_and_the_same_every_time(cifar10_samples):
    train, _ = cifar10_samples
    rest, held = hold_out(train, 5, seed=7)
    assert len(rest) + len(held) == len(train)
    assert not torch.isin(held.indices, rest.indices).any()
    assert held.class_counts().tolist() == [5] * 10
    again_rest, again_held = hold_out(train, 5, seed=7)
    assert torch.equal(held.indices, again_held.indices) and torch.equal(rest.indices, again_rest.indices)
    # the held part is exactly subset()'s draw with that seed
    assert torch.equal(held.indices, subset(train, 5, seed=7).indices)


def test_no_training_subset_of_any_seed_touches_the_validation_split(cifar10_samples, monkeypatch):
    """load_data draws every training subset from what the validation split leaves."""
    train, test = cifar10_samples
    from course_lib.experiments import runs

    monkeypatch.setattr(runs, "load_dataset", lambda name, split, **kw: train if split == "train" else test)
    profile = PROFILES["study2"]
    vals = []
    for seed in (0, 1, 2):
        tr, _, val = load_data(RunSpec("vit", "cifar10", profile, train_per_class=20, seed=seed))
        assert val is not None and len(val) == 10 * profile.validation_per_class
        assert not torch.isin(tr.indices, val.indices).any()
        vals.append(val.indices)
    assert all(torch.equal(v, vals[0]) for v in vals)            # one fixed split, whatever the seed
    expected = hold_out(train, profile.validation_per_class, VALIDATION_SEED)[1]
    assert torch.equal(vals[0], expected.indices)


def test_study2_keeps_epochs_fixed_across_sizes_and_the_old_profiles_keep_equal_steps():
    small = RunSpec("vit", "cifar10", PROFILES["study2"], train_per_class=100, epochs=50)
    large = RunSpec("vit", "cifar10", PROFILES["study2"], epochs=50)
    assert training_config(small).epochs == training_config(large).epochs == 50
    old_small = training_config(RunSpec("vit", "cifar10", PROFILES["study"], train_per_class=100))
    assert old_small.epochs > PROFILES["study"].epochs            # the first study's equal-steps rule, unchanged


def test_a_learning_rate_override_enters_the_key_and_the_recipe_but_not_old_identities():
    spec = RunSpec("vit", "cifar10", PROFILES["study2"], train_per_class=100, epochs=50, lr=5e-4)
    assert "lr0.0005" in spec.key and training_config(spec).lr == 5e-4
    assert "lr" not in RunSpec("vit", "cifar10", PROFILES["study"]).to_dict()
    with pytest.raises(ValueError, match="RunSpec.lr"):
        RunSpec("vit", "cifar10", PROFILES["study2"], lr=float("nan"))


# --------------------------------------------------------------------------------------------------------------
# fit with a validation split

def test_fit_records_validation_and_clean_training_accuracy_and_tests_once(cifar10_samples):
    train, test = cifar10_samples
    rest, val = hold_out(train, 3, seed=1)
    tr, te = subset(rest, 4), subset(test, 2)
    model = tiny_vit()
    h = fit(model, tr, te, val_data=val, epochs=4, eval_every=2, batch_size=16, warmup_epochs=0.5,
            progress=False)
    assert h.val_acc[0] is None and h.val_acc[2] is None and h.val_acc[1] is not None
    assert len(h.val_acc) == len(h.train_clean_acc) == len(h.epoch) == 4
    assert h.test_acc == [None, None, None, h.test_acc[-1]] and h.test_acc[-1] is not None
    # the series are what evaluate() says, independently, on the same images without augmentation
    val_loss, val_acc = evaluate(model, val)
    clean_loss, clean_acc = evaluate(model, tr)
    assert h.val_acc[-1] == pytest.approx(val_acc) and h.val_loss[-1] == pytest.approx(val_loss, rel=1e-5)
    assert h.train_clean_acc[-1] == pytest.approx(clean_acc)
    assert h.last("val_acc") == h.val_acc[-1]
    from course_lib.history import unpack_bits
    assert 100 * unpack_bits(h.val_correct, len(val)).double().mean().item() == pytest.approx(h.val_acc[-1])


def test_a_validation_split_of_another_data_set_is_refused(cifar10_samples):
    from course_lib.data import load_dataset

    train, test = cifar10_samples
    svhn = load_dataset("svhn", "train", source="samples")
    with pytest.raises(ValueError, match="hold_out"):
        fit(tiny_vit(), subset(train, 2), test, val_data=subset(svhn, 1), epochs=1, progress=False)


def test_the_validation_split_enters_the_identity_only_when_there_is_one(cifar10_samples):
    train, test = cifar10_samples
    spec = RunSpec("vit", "cifar10", PROFILES["cpu"])
    model = tiny_vit()
    cfg = training_config(spec)
    plain = run_identity(spec, model, [], cfg, train, test)
    assert "val_data" not in plain
    with_val = run_identity(spec, model, [], cfg, train, test, subset(train, 1))
    assert with_val["val_data"]["images"] == 10


# --------------------------------------------------------------------------------------------------------------
# The budget rule, on made-up records

def _record(model="vit", lr=1e-3, epochs=50, val=50.0, clean=80.0, seed=0, n=100):
    spec = {"model": model, "dataset": "cifar10", "profile": "study2", "drloc": False, "train_per_class": n,
            "epochs": epochs, "lr": lr, "seed": seed}
    return {"key": f"{model}-{lr}-{epochs}", "spec": spec, "label": model, "epochs": epochs, "val_images": 1000,
            "final_val_acc": val, "best_val_acc": val, "final_train_clean_acc": clean, "train_seconds": 60.0,
            "final_test_acc": val - 1,
            "history": {"train_acc": [clean - 10]}}


def test_fit_verdict_words():
    assert br.fit_verdict(_record(clean=99.9), []).word == "memorised"
    assert br.fit_verdict(_record(clean=90.0), []).word == "fits its data"
    assert br.fit_verdict(_record(clean=99.9, val=85.0), []).word == "fits its data"   # memorised: 20 points lower
    low = _record(clean=70.0, val=50.0)
    assert br.fit_verdict(low, [low]).word == "under-fitted"
    assert br.fit_verdict(low, [low, _record(epochs=100, clean=80.0, val=50.9)]).word == "at plateau"
    assert br.fit_verdict(low, [low, _record(epochs=100, clean=80.0, val=51.0)]).word == "under-fitted"
    old = {**low, "final_train_clean_acc": None}
    old.pop("final_train_clean_acc")
    assert "running, augmented" in br.fit_verdict(old, []).sentence
    assert br.fit_verdict({**old, "history": {"train_acc": []}}, []).word == "unknown"


def test_another_seed_of_a_budget_reads_the_doubling_check_made_on_seed_0():
    base, doubled = _record(lr=5e-4, val=52.0, clean=70.0), _record(lr=5e-4, epochs=100, val=51.0, clean=97.0)
    seed1 = _record(lr=5e-4, val=49.0, clean=72.0, seed=1)
    verdict = br.fit_verdict(seed1, [base, doubled, seed1])
    assert verdict.word == "at plateau" and "checked on seed 0 of the same run" in verdict.sentence
    assert br.fit_verdict(seed1, [seed1, doubled]).word == "under-fitted"         # no seed-0 run of that budget
    other_size = _record(lr=5e-4, val=49.0, clean=72.0, seed=1, n=250)
    assert br.fit_verdict(other_size, [base, doubled, other_size]).word == "under-fitted"


def test_choose_budget_follows_the_rule():
    grid = [_record(lr=1e-3, val=50.0), _record(lr=5e-4, val=52.0), _record(lr=2e-3, val=49.0)]
    budget, words = br.choose_budget("vit", grid)
    assert budget is None and "doubling check" in words
    gained = grid + [_record(lr=5e-4, epochs=100, val=54.0)]
    budget, words = br.choose_budget("vit", gained)
    assert budget is None and "200 epochs" in words           # a doubling that gains asks for the next one
    flat = gained + [_record(lr=5e-4, epochs=200, val=54.5)]
    assert br.choose_budget("vit", flat)[0] == (100, 5e-4)
    assert br.choose_budget("vit", grid + [_record(lr=5e-4, epochs=100, val=52.5)])[0] == (50, 5e-4)
    tie = [_record(lr=1e-3, val=50.0), _record(lr=5e-4, val=50.0), _record(lr=2e-3, val=49.0),
           _record(lr=5e-4, epochs=100, val=50.0)]
    assert br.choose_budget("vit", tie)[0] == (50, 5e-4)       # ties go to the smaller rate
    assert br.choose_budget("resnet18", grid)[0] is None       # another family's records do not count
    fitted = grid + [_record(lr=5e-4, epochs=100, val=54.0, clean=95.0)]
    budget, words = br.choose_budget("vit", fitted)             # a doubling that gains and fits is trained
    assert budget == (100, 5e-4) and "it fits its training images (95.0 % clean" in words


def test_the_queue_has_no_duplicate_run_and_puts_tuning_first():
    queue = br.study2_queue([])
    keys = [s.key for s, _ in queue]
    assert len(keys) == len(set(keys))
    assert all(planned for _, planned in queue[:6]) and "e50-lr" in keys[0]
    assert not any(planned for _, planned in queue[6:])          # no budget chosen yet
    seeds_at_100 = {s.seed for s, _ in queue if s.drloc and s.train_per_class == 100}
    seeds_at_500 = {s.seed for s, _ in queue if s.drloc and s.train_per_class is None}
    assert seeds_at_100 == {0, 1, 2, 3, 4} and seeds_at_500 == {0, 1, 2}
    vit_seeds_at_100 = {s.seed for s, _ in queue if s.model == "vit" and not s.drloc and s.train_per_class == 100}
    assert seeds_at_100 <= vit_seeds_at_100                     # every DRLoc seed has its paired ViT


def test_progress_table_counts_done_runs_and_hours():
    queue = br.study2_queue([])
    done = copy.deepcopy(_record())
    done["key"] = queue[0][0].key
    text = br.progress_table(queue, [done], {"vit": 50.0, "resnet18": 25.0, "vit+drloc": 40.0})
    assert text.startswith(f"Runs done: 1 of {len(queue)}")
    assert f"`{queue[0][0].key}` | 50 | done" in text
    done.update(images_per_second=57.4, test_images=10_000, final_test_acc=49.0)     # 4,900 of 10,000 right
    text = br.progress_table(queue, [done], {"vit": 50.0, "resnet18": 25.0, "vit+drloc": 40.0})
    assert "| 57 | 1 min | 49.00 % (48.0-50.0, 10,000 images) |" in text


def test_the_interval_of_two_budgets_is_paired_where_both_keep_their_validation_images():
    from course_lib.history import pack_bits

    hits = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.4
    a, b = _record(val=100 * hits.double().mean().item()), _record(val=100 * hits.double().mean().item())
    unpaired = br._half_width(a, b)
    assert unpaired == pytest.approx(196 * (2 * 0.4 * 0.6 / 1000) ** 0.5, rel=0.05)
    a["history"]["val_correct"] = b["history"]["val_correct"] = pack_bits(hits)
    assert br._half_width(a, b) == 0.0                 # the same images right and wrong: no difference at all
    flipped = hits.clone()
    flipped[:10] = ~flipped[:10]
    b["history"]["val_correct"] = pack_bits(flipped)
    assert 0 < br._half_width(a, b) < unpaired


def test_the_queue_keeps_the_doubling_checks_made_once_the_budget_is_chosen():
    def rec(lr, epochs, val):
        spec = br._spec("vit", br.TUNING_SIZE, (epochs, lr))
        return {**_record(lr=lr, epochs=epochs, val=val), "key": spec.key}

    grid = [rec(1e-3, 50, 50.0), rec(5e-4, 50, 52.0), rec(2e-3, 50, 49.0)]
    keys = [s.key for s, _ in br.study2_queue(grid)]
    due = br._spec("vit", br.TUNING_SIZE, (100, 5e-4)).key
    assert due in keys                                              # the doubling check is planned
    chosen = grid + [rec(5e-4, 100, 52.5)]
    queue = br.study2_queue(chosen)
    assert due in [s.key for s, _ in queue]                         # ... and stays listed once made
    assert br._spec("vit", br.TUNING_SIZE, (200, 5e-4)).key not in [s.key for s, _ in queue]
    planned = dict((s.key, p) for s, p in queue)
    assert all(p for s, p in queue if s.model == "vit" and not s.drloc and s.epochs == 50 and s.seed < 3)  # curve
    ladder = br._spec("vit", br.TUNING_SIZE, (50, 5e-4), drloc=True).key
    assert planned[ladder] is True                   # ViT + DRLoc's ladder starts from the ViT's budget at once ...
    assert not any(p for s, p in queue if s.drloc and s.key != ladder)      # ... and its pair waits for it


def test_the_second_studys_weights_of_record_are_the_runs_its_notebooks_open(monkeypatch):
    from course_lib.experiments import comparison_specs, study
    from course_lib.profiles import get_profile

    specs, of_record = study._queue("study2")          # the records of record: both budgets are chosen
    assert of_record <= set(specs)
    keys = {s.key for s in of_record}
    vit, resnet, pair = (br.tuned_budget(m) for m in ("vit", "resnet18", br.DRLOC))
    assert {s.key for s in comparison_specs(get_profile("study2"), "cifar10").values()} <= keys
    assert {br._spec("vit", 500, pair, drloc=d).key for d in (True, False)} <= keys     # notebook 05's pair
    assert {br._spec("vit", n, vit, seed=s).key for n in (100, 500) for s in (0, 1, 2)} <= keys   # 04's contrast
    assert br._spec("resnet18", 500, resnet, seed=1).key not in keys          # the curve's other runs: records only
    assert not any(s.epochs == 2 * resnet[0] and s.model == "resnet18" for s in of_record)   # nor a doubling check

    def rec(lr, epochs, val):
        spec = br._spec("vit", br.TUNING_SIZE, (epochs, lr))
        return {**_record(lr=lr, epochs=epochs, val=val), "key": spec.key}

    grid = [rec(1e-3, 50, 50.0), rec(5e-4, 50, 52.0), rec(2e-3, 50, 49.0), rec(5e-4, 100, 52.5)]
    monkeypatch.setattr(study, "study2_queue", lambda: br.study2_queue(grid))
    monkeypatch.setattr(study, "choose_budget", lambda model: br.choose_budget(model, grid))
    assert study._queue("study2")[1] == set()        # ResNet-18's budget is not chosen: the notebooks' runs unknown


def test_the_doubling_check_at_the_largest_size_waits_for_its_base_run_and_is_dropped_if_it_fits():
    def rec(lr, epochs, val, n=br.TUNING_SIZE, clean=80.0):
        spec = br._spec("vit", n, (epochs, lr))
        return {**_record(lr=lr, epochs=epochs, val=val, clean=clean, n=n), "key": spec.key}

    grid = [rec(1e-3, 50, 50.0), rec(5e-4, 50, 52.0), rec(2e-3, 50, 49.0), rec(5e-4, 100, 52.5)]
    check = br._spec("vit", 500, (100, 5e-4)).key
    planned = dict((s.key, p) for s, p in br.study2_queue(grid))
    assert planned[check] is False                                   # its base run (500 per class) is not made yet
    base = br._spec("vit", 500, (50, 5e-4)).key
    not_fitted = grid + [{**rec(5e-4, 50, 55.0, n=500, clean=75.0), "key": base}]
    assert dict((s.key, p) for s, p in br.study2_queue(not_fitted))[check] is True
    fitted = grid + [{**rec(5e-4, 50, 55.0, n=500, clean=95.0), "key": base}]
    assert check not in [s.key for s, _ in br.study2_queue(fitted)]


def _drloc_rec(epochs, val, clean, drloc=True, n=br.TUNING_SIZE, seed=0):
    spec = br._spec("vit", n, (epochs, 5e-4), seed=seed, drloc=drloc)
    r = {**_record(lr=5e-4, epochs=epochs, val=val, clean=clean, n=n, seed=seed), "key": spec.key}
    r["spec"] = {**r["spec"], "drloc": drloc}
    return r


VIT_GRID = [_drloc_rec(50, 50.0, 80.0, drloc=False) | {"key": br._spec("vit", 100, (50, 1e-3)).key,
                                                       "spec": {**_record(lr=1e-3)["spec"]}},
            _drloc_rec(50, 52.0, 80.0, drloc=False),
            _drloc_rec(50, 49.0, 80.0, drloc=False) | {"key": br._spec("vit", 100, (50, 2e-3)).key,
                                                       "spec": {**_record(lr=2e-3)["spec"]}},
            _drloc_rec(100, 52.5, 97.0, drloc=False)]      # the ViT's budget: 50 epochs at 5e-4 (100 gained 0.5)


def test_the_drloc_comparisons_budget_climbs_vit_drlocs_own_doubling_ladder_from_the_vits():
    assert br.choose_budget(br.DRLOC, VIT_GRID) == (None, br.choose_budget(br.DRLOC, VIT_GRID)[1])
    assert "its run at 50 epochs is not made yet" in br.choose_budget(br.DRLOC, VIT_GRID)[1]
    fits = [_drloc_rec(50, 51.0, 92.0)]                       # fits at the ViT's budget: the ViT's budget
    assert br.choose_budget(br.DRLOC, VIT_GRID + fits)[0] == (50, 5e-4)
    slow = [_drloc_rec(50, 50.0, 75.0)]                       # does not fit: twice the epochs is asked for
    assert "doubling check (100 epochs" in br.choose_budget(br.DRLOC, VIT_GRID + slow)[1]
    flat = slow + [_drloc_rec(100, 50.9, 85.0)]               # ... gained under a point: at plateau, 50 epochs
    assert br.choose_budget(br.DRLOC, VIT_GRID + flat)[0] == (50, 5e-4)
    gained = slow + [_drloc_rec(100, 51.2, 98.0)]             # ... gained a point and fits: 100 epochs
    budget, why = br.choose_budget(br.DRLOC, VIT_GRID + gained)
    assert budget == (100, 5e-4) and "at 100 epochs it fits its training images (98.0 %" in why
    assert [r["key"] for r in br.tuning_table(VIT_GRID + gained)][-2:] == [r["key"] for r in gained]   # its ladder
    short = slow + [_drloc_rec(100, 51.2, 85.0)]              # ... gained but does not fit yet: 200 epochs next
    assert "doubling check (200 epochs" in br.choose_budget(br.DRLOC, VIT_GRID + short)[1]
    assert br.choose_budget(br.DRLOC, VIT_GRID[1:])[0] is None                # no ViT budget, no DRLoc budget


def test_the_drloc_pair_trains_both_sides_with_the_drloc_comparisons_budget():
    records = VIT_GRID + [_drloc_rec(50, 50.0, 75.0)]
    queue = br.study2_queue(records)
    planned = dict((s.key, p) for s, p in queue)
    keys = list(planned)
    check = br._spec("vit", br.TUNING_SIZE, (100, 5e-4), drloc=True).key
    assert planned[check] is True and keys.index(check) == keys.index(records[-1]["key"]) + 1     # the next rung
    chosen = records + [_drloc_rec(100, 51.2, 98.0)]
    queue = br.study2_queue(chosen)
    pairs = [s for s, p in queue if s.train_per_class in (100, None) and s.model == "vit" and s.epochs == 100]
    assert all(p for s, p in queue if s in pairs)
    for n, seeds in ((100, range(5)), (None, range(3))):       # five paired seeds at 100 per class, three at 500
        for drloc in (True, False):
            assert {s.seed for s in pairs if s.train_per_class == n and s.drloc == drloc} == set(seeds)
    assert br._spec("vit", 100, (50, 5e-4), seed=3, drloc=True).key not in [s.key for s, _ in queue]
    curve = br._spec("vit", 250, (50, 5e-4), seed=1).key       # the curve's ViT keeps the ViT's budget
    assert dict((s.key, p) for s, p in queue)[curve] is True


def test_the_notebooks_runs_under_study2_are_the_queues_runs_with_the_chosen_budget():
    from course_lib.experiments import comparison_specs, contrast_specs, curve_specs, drloc_specs, plan
    from course_lib.profiles import get_profile

    profile = get_profile("study2")
    queue = {s.key for s, planned in br.study2_queue() if planned}
    vit, resnet = br.tuned_budget("vit"), br.tuned_budget("resnet18")
    pair = comparison_specs(profile, "cifar10")
    assert (pair["ViT"].epochs, pair["ViT"].lr) == vit and (pair["ResNet-18"].epochs, pair["ResNet-18"].lr) == resnet
    drloc = drloc_specs(profile, "cifar10")
    pair_budget = br.tuned_budget(br.DRLOC)
    assert all((s.epochs, s.lr) == pair_budget for s in drloc.values())   # both sides: the DRLoc comparison's
    curve = curve_specs(profile)
    assert set(curve["ViT+DRLoc"]) == set(profile.drloc_curve_sizes) and set(curve["ViT"]) == {100, 250, 500}
    if pair_budget != vit:                                # the pair's ViT is its own column, not the curve's ViT
        from course_lib.experiments.plan import PAIR_VIT
        assert set(curve[PAIR_VIT]) == set(profile.drloc_curve_sizes)
        assert all((s.epochs, s.lr) == vit for specs in curve["ViT"].values() for s in specs)
    every = [s for by_n in curve.values() for specs in by_n.values() for s in specs]
    every += [s for specs in plan(profile, ("cifar10",)).values() for s in specs if s.profile is profile]
    every += [s for seed in profile.curve_seeds for s in contrast_specs(profile, seed).values()]
    assert {s.key for s in every} <= queue                               # nothing the driver would not train
    assert list(contrast_specs(profile, 1)) == ["ViT on 100/class", "ViT on 500/class"]


def test_a_profile_pairs_drloc_only_at_curve_sizes_it_has():
    from dataclasses import replace
    from course_lib.profiles import get_profile

    with pytest.raises(ValueError, match="drloc_curve_sizes"):
        replace(get_profile("study2"), drloc_curve_sizes=(100, 1000))


def test_under_a_tuned_profile_an_unchosen_budget_says_how_to_choose_it():
    with pytest.raises(RuntimeError, match="not chosen the budget of 'vit' yet.*--queue study2"):
        br.tuned_budget("vit", [])
