"""The study's pilot rule and queue (the runs themselves are trained by `python -m course_lib.experiments.study`)."""
from __future__ import annotations

import pytest

from course_lib.experiments.study import plateau_epoch, study_queue


def _rule_by_hand(acc, tolerance):
    """The rule written out independently: the 3-epoch mean (2 at the ends), then the first within tolerance."""
    n = len(acc)
    smooth = [sum(acc[max(0, i - 1):min(n, i + 2)]) / len(acc[max(0, i - 1):min(n, i + 2)]) for i in range(n)]
    best = max(smooth)
    return next(i + 1 for i, s in enumerate(smooth) if s >= best - tolerance)


@pytest.mark.parametrize("acc", [
    [10, 20, 30, 40, 50, 52, 53, 53, 54, 53],            # rises, then flattens
    [22, 29, 33, 28, 30, 34, 35, 40, 40, 44, 45, 48, 49, 48, 52, 55, 48, 49],   # noisy, still rising
    [50, 50, 50, 50],                                       # flat from the start
])
def test_plateau_epoch_follows_the_rule_written_out(acc):
    for tolerance in (0.5, 2.0, 5.0):
        assert plateau_epoch(acc, tolerance) == _rule_by_hand(acc, tolerance)


def test_a_curve_still_rising_at_its_end_plateaus_only_at_its_end():
    assert plateau_epoch(list(range(0, 100, 5)), 2.0) == 20


def test_plateau_epoch_refuses_short_or_non_finite_curves():
    with pytest.raises(ValueError, match="at least 3 finite"):
        plateau_epoch([1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3 finite"):
        plateau_epoch([1.0, float("nan"), 2.0, 3.0])


def test_the_queue_puts_the_three_runs_of_record_first():
    specs, of_record = study_queue()
    assert [s.label for s in specs[:3]] == ["ViT", "ResNet-18", "ViT+DRLoc"]
    # Their weights are kept, and those of the ViT that notebook 04 contrasts with them (the smallest size).
    from course_lib.experiments import plan
    from course_lib.profiles import get_profile

    contrast = plan(get_profile("study"), ("cifar10",))["ch4"]
    assert of_record == set(specs[:3]) | set(contrast) and contrast[0].key == "cifar10-vit-n100-course-study-s0"
    assert contrast[0] in specs
    assert all(s.profile.name == "study" and s.dataset == "cifar10" for s in specs)
    assert specs[2].drloc_schedule == "official" and len(specs) == len(set(specs))


def test_the_cap_per_run_refuses_a_long_estimate_and_can_be_raised(monkeypatch, capsys):
    from types import SimpleNamespace

    from course_lib.experiments import queue, study

    spec = study.study_queue()[0][3]                               # a curve run: no weights to export
    fake = SimpleNamespace(spec=spec, train=SimpleNamespace(source="CIFAR-10 JPEG copy"), identity_hash="h",
                           model=None, extra_losses=[], cfg=None, checkpoint=SimpleNamespace(exists=lambda: False),
                           epochs_done=lambda: 0, estimate_seconds=lambda ips, done=0: 70 * 60)  # 70 min
    started = []
    monkeypatch.setattr(queue, "prepare", lambda spec, root, work: fake)
    monkeypatch.setattr(queue, "read_record", lambda path: None)
    monkeypatch.setattr(queue, "measure_throughput", lambda *args: 50.0)
    monkeypatch.setattr(queue, "execute", lambda run, *a, **k: started.append(run) or (_ for _ in ()).throw(
        KeyboardInterrupt))
    study.run_study(only=[spec.key], device="cpu")
    assert not started and "over the cap of 3600 s per run" in capsys.readouterr().out
    with pytest.raises(KeyboardInterrupt):                          # execute is reached: the run would start
        study.run_study(only=[spec.key], device="cpu", max_run_s=75 * 60)
    assert started == [fake]
