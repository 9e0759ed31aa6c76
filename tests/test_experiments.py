import json
import os
from pathlib import Path

import pytest
import torch

from course_lib import experiments as ex
from course_lib.experiments import RunSpec


def test_keys_are_unique_and_file_name_safe():
    specs = [s for chapter in ex.plan("gpu").values() for s in chapter]
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    assert all(set(k) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-") for k in keys)
    assert RunSpec("vit", "cifar10", "gpu", drloc=True).key == "cifar10-vit-drloc_l0.5_m32-course-gpu-s0"


def test_a_budget_equal_to_the_default_is_the_same_run():
    assert RunSpec("vit", "cifar10", "cpu", train_per_class=100) == RunSpec("vit", "cifar10", "cpu")
    assert RunSpec("vit", "cifar10", "gpu", train_per_class=5000) == RunSpec("vit", "cifar10", "gpu")
    assert RunSpec("vit", "cifar10", "gpu", train_per_class=500).train_per_class == 500


def test_smaller_data_gets_more_epochs_same_steps():
    full = ex.training_config(RunSpec("vit", "cifar10", "gpu"))
    tenth = ex.training_config(RunSpec("vit", "cifar10", "gpu", train_per_class=500))
    tiny = ex.training_config(RunSpec("vit", "cifar10", "gpu", train_per_class=5))
    assert (full.epochs, tenth.epochs, tiny.epochs) == (10, 100, 200)          # 200: capped at 20x
    assert ex.training_config(RunSpec("vit", "cifar10", "cpu", train_per_class=200)).epochs == 8
    assert ex.training_config(RunSpec("resnet18", "cifar10", "smoke")).batch_size == 64
    paper = ex.training_config(RunSpec("vit_paper", "cifar10", "paper", recipe="zhu2023"))
    assert (paper.epochs, paper.batch_size, paper.lr, paper.optimizer) == (500, 100, 1e-4, "adam")
    with pytest.raises(ValueError, match="Unknown recipe"):
        ex.training_config(RunSpec("vit", "cifar10", "gpu", recipe="mine"))


def test_plan_covers_every_chapter_without_duplicates():
    chapters = ex.plan("cpu")
    assert set(chapters) == {"ch1", "ch4", "ch5", "results"}
    flat = [s for specs in chapters.values() for s in specs]
    assert len(flat) == len(set(flat))
    assert {(s.model, s.dataset) for s in chapters["ch1"]} == {(m, d) for m in ("vit", "resnet18")
                                                              for d in ("cifar10", "cifar100", "svhn")}
    assert sum(s.drloc for s in chapters["ch5"]) == 3 + 1 + 2 + 2          # data sets, subset, lambda, m ablations
    assert all(s.drloc for s in chapters["ch5"] if s.train_per_class is None)   # the baselines are ch1's runs


def test_train_run_records_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "get_profile", _tiny)
    spec = RunSpec("vit", "svhn", "smoke", train_per_class=3, epochs=1)
    result = ex.train_run(spec, root=tmp_path, progress=False)
    path = tmp_path / "results" / f"{spec.key}.json"
    record = json.loads(path.read_text())
    assert record["final_test_acc"] == result.history.test_acc[-1]
    assert record["train_images"] == 30 and "committed real samples" in record["train_source"]
    assert record["environment"]["torch"] == torch.__version__ and record["spec"]["dataset"] == "svhn"
    assert (tmp_path / "checkpoints" / f"{spec.key}.pt").exists()
    # A second call loads the finished checkpoint: same weights, same record, nothing retrained.
    again = ex.train_run(spec, root=tmp_path, progress=False)
    assert again.record == record
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                 again.model.state_dict().values()))
    assert ex.get_record(spec, root=tmp_path) == record
    assert [r["key"] for r in ex.load_results(tmp_path / "results")] == [spec.key]


def _tiny(name=None):
    """The smoke profile evaluating on 40 test images, to keep these tests fast."""
    from course_lib.profiles import PROFILES

    return PROFILES["smoke"].with_overrides(test_images=40)


def test_drloc_runs_carry_the_extra_loss(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "get_profile", _tiny)
    spec = RunSpec("vit", "cifar10", "smoke", drloc=True, drloc_pairs=4, train_per_class=2, epochs=1)
    result = ex.train_run(spec, root=tmp_path, progress=False)
    assert "drloc" in result.history.extra and result.record["label"] == "ViT+DRLoc"


def test_setting_description_names_budget_and_hardware():
    text = ex.describe_setting("cpu")
    assert "profile 'cpu'" in text and "CPU" in text and "torch" in text


def test_the_paper_profile_uses_the_papers_recipes():
    assert RunSpec("vit", "cifar10", "gpu").recipe == "course"
    assert RunSpec("vit_paper", "cifar10", "paper").recipe == "zhu2023"
    assert ex.drloc_recipe("paper") == "liu2021" and ex.drloc_recipe("gpu") == "course"
    ch5 = ex.plan("paper")["ch5"]
    assert {s.recipe for s in ch5} == {"liu2021"} and {s.drloc for s in ch5} == {False, True}
    assert ex.training_config(RunSpec("vit", "cifar10", "paper", drloc=True, recipe="liu2021")).epochs == 100
    assert RunSpec("vit", "cifar10", "paper", recipe="course").recipe == "course"


def test_run_notebooks_passes_the_budget_through_the_environment(monkeypatch, tmp_path):
    """A stored papermill `profile = ...` cell would pin nbval in CI to that budget: only `datasets` is injected."""
    import papermill as pm

    calls = []
    monkeypatch.setattr(pm, "execute_notebook", lambda src, dst, parameters=None, **kw: calls.append(
        (Path(src).stem, parameters, os.environ.get("COURSE_PROFILE"), os.environ.get("COURSE_DATA_ROOT"))))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("COURSE_DATA_ROOT", "x")     # recorded, so that teardown removes what the call sets
    monkeypatch.delenv("COURSE_DATA_ROOT")
    ex._run_notebooks("gpu", ["01_vit_vs_resnet", "02_attention_rollout"], str(tmp_path), ["cifar10"])
    assert calls == [("01_vit_vs_resnet", {"datasets": ["cifar10"]}, "gpu", str(tmp_path.resolve())),
                     ("02_attention_rollout", None, "gpu", str(tmp_path.resolve()))]
    calls.clear()
    ex._run_notebooks("cpu", ["01_vit_vs_resnet"], None, ["svhn", "cifar100", "cifar10"])
    assert calls == [("01_vit_vs_resnet", None, "cpu", str(tmp_path.resolve()))]
