"""Runs longer than a session: the estimate counts only the epochs a run's checkpoint does not hold yet, and
``carry_over`` starts a run that cannot finish before the deadline (the next call resumes it)."""
from dataclasses import replace

import pytest

from course_lib.experiments import RunSpec, of_record, queue, records, runs
from course_lib.profiles import PROFILES

TINY = replace(PROFILES["smoke"], test_images=40)


def tiny(epochs: int = 2, seed: int = 0) -> RunSpec:
    return RunSpec("vit", "cifar10", TINY, train_per_class=2, epochs=epochs, seed=seed)


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "records_of_record")
    monkeypatch.setattr(of_record, "OF_RECORD_DIR", tmp_path / "checkpoints_of_record")
    monkeypatch.setattr(queue, "measure_throughput", lambda *args: 100.0)
    return tmp_path


def test_the_estimate_counts_only_the_epochs_the_checkpoint_does_not_hold(work):
    run = runs.prepare(tiny(epochs=2), root=work / "work")
    assert run.epochs_done() == 0
    whole = run.estimate_seconds(100.0)
    assert run.estimate_seconds(100.0, 1) == pytest.approx(whole / 2)
    runs.execute(run, "cpu", progress=False)
    assert run.checkpoint.exists() and run.epochs_done() == 2
    assert run.estimate_seconds(100.0, run.epochs_done()) == 0
    other = runs.prepare(tiny(epochs=2, seed=1), root=work / "work")
    other.checkpoint = run.checkpoint          # another run's checkpoint holds none of this run's epochs
    assert other.epochs_done() == 0


@pytest.mark.parametrize("carry_over", [False, True])
def test_a_run_longer_than_the_time_left_starts_only_with_carry_over(work, carry_over, capsys):
    spec = tiny(epochs=1)
    job = queue.Queue([spec], work / "weights", records=work / "records", carry_over=carry_over)
    report = queue.work_down(job, deadline_s=1e-3, root=work / "work", device="cpu",
                             clock=iter([0.0] + [0.0] * 10).__next__)
    outcome = report.outcome[spec.key]
    if carry_over:
        assert outcome.startswith("trained") and "next call resumes it" in capsys.readouterr().out
    else:
        assert outcome.startswith("skipped: needs")
        assert not (work / "records" / f"{spec.key}.json").exists()
