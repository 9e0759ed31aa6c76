"""What a notebook will train, said before it trains: which runs are at hand, which are trained, how long."""
from __future__ import annotations

import torch

from course_lib.experiments import budget
from course_lib.experiments.runs import RunSpec
from course_lib.profiles import PROFILES


def test_expected_seconds_counts_steps_evaluations_and_the_drloc_slowdown():
    spec = RunSpec("vit", "cifar10", PROFILES["study"])          # 5,000 images, 16 epochs of 78 steps of 64
    images = 29 * (5000 // 64) * 64
    evaluations = 5                                               # epochs 7, 14, 21, 28 and the last
    expected = budget.RUN_OVERHEAD_S["cpu"] + 1.2 * (images + evaluations * 10_000 / 3) / 60.0
    assert abs(budget.expected_seconds(spec, torch.device("cpu")) - expected) < 1e-6
    with_drloc = RunSpec("vit", "cifar10", PROFILES["study"], drloc=True)
    assert budget.expected_seconds(with_drloc, torch.device("cpu")) > expected
    assert budget.expected_seconds(spec, torch.device("cuda")) < expected / 10
    assert budget.expected_seconds(spec, torch.device("cuda")) > budget.RUN_OVERHEAD_S["cuda"]


def test_the_plan_lists_what_is_trained_and_what_is_at_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    smoke = PROFILES["smoke"]
    text = budget.training_plan("02_attention_rollout", smoke, device="cpu")
    key = RunSpec("vit", "cifar10", smoke).key
    assert f"- train {key} on CPU" in text and "1 to train" in text and "to load" not in text
    record = {"identity_hash": "abc123"}
    monkeypatch.setattr(budget, "find_record", lambda k: (record, tmp_path / f"{k}.json") if k == key else None)
    assert "1 to train" in budget.training_plan("02_attention_rollout", smoke, device="cpu")  # no weights
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / f"{key}-abc123.pt").write_bytes(b"")
    text = budget.training_plan("02_attention_rollout", smoke, device="cpu")
    assert "Nothing to train" in text and f"- load {key}" in text and "1 to load" in text


def test_a_record_without_weights_is_enough_for_a_notebook_that_reads_records_only(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(budget, "find_record", lambda k: ({"identity_hash": "x"}, tmp_path / f"{k}.json"))
    assert "Nothing to train" in budget.training_plan("06_results", PROFILES["smoke"], device="cpu",
                                                      needs_models=False)
    assert "to train:" in budget.training_plan("02_attention_rollout", PROFILES["smoke"], device="cpu")


def test_runs_a_profile_trains_with_its_own_driver_are_left_out_not_promised(tmp_path, monkeypatch):
    import importlib

    plan = importlib.import_module("course_lib.experiments.plan")

    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(budget, "find_record", lambda k: None)
    monkeypatch.setattr(plan, "get_record", lambda spec, train_missing=True: None)
    text = budget.training_plan("02_attention_rollout", PROFILES["study"], device="cpu")
    assert "1 left out" in text and "not trained yet: profile 'study' trains its runs with its own driver" in text
    assert "Nothing to train" in text and "to load" not in text
    assert "will be trained below" not in plan.scale_box("02_attention_rollout", PROFILES["study"])


def test_a_run_of_record_that_will_be_fetched_is_planned_as_fetched_not_left_out(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    spec = RunSpec("vit", "cifar10", PROFILES["study"])
    record = {"identity_hash": "abc123"}
    monkeypatch.setattr(budget, "find_record", lambda k: (record, tmp_path / f"{k}.json") if k == spec.key else None)
    monkeypatch.setattr(budget, "course_manifest", lambda: {spec.key: {"identity_hash": "abc123"}})
    text = budget.training_plan("02_attention_rollout", PROFILES["study"], device="cpu")
    assert f"- fetch {spec.key}" in text and "left out" not in text and "Nothing to train" in text


def test_a_gpu_plan_on_a_cpu_says_no_gpu_is_attached_and_how_to_attach_one(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    text = budget.training_plan("02_attention_rollout", PROFILES["gpu"], device="cpu", use_course_models=False)
    assert "No GPU is attached" in text and "Runtime → Change runtime type" in text
    assert "No GPU" not in budget.training_plan("02_attention_rollout", PROFILES["smoke"], device="cpu")
