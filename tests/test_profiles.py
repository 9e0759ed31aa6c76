import pytest
import torch

from course_lib.profiles import PROFILES, get_profile


def test_named_profiles_and_env(monkeypatch):
    assert get_profile("gpu").train_images is None
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert get_profile().name == "cpu"
    assert get_profile("paper").name == "paper"          # an explicit name beats the environment


def test_hardware_default(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert get_profile().name == ("gpu" if torch.cuda.is_available() else "smoke")


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="Choose one of.*smoke"):
        get_profile("huge")


def test_budget_per_class():
    smoke = PROFILES["smoke"]
    assert smoke.train_per_class(10) == 20 and smoke.train_per_class(100) == 2 and smoke.train_per_class(1000) == 1
    assert PROFILES["gpu"].train_per_class(10) is None


def test_each_profile_names_its_models_and_recipes():
    from course_lib.recipes import RECIPES
    from course_lib.models import MODELS

    for p in PROFILES.values():
        assert p.vit_model in MODELS and {p.comparison_recipe, p.drloc_recipe} <= set(RECIPES)
        assert list(p.curve_sizes) == sorted(p.curve_sizes) and p.curve_seeds
    paper = PROFILES["paper"]
    assert (paper.vit_model, paper.comparison_recipe, paper.drloc_recipe) == ("vit_paper", "zhu2023", "liu2021")
    assert PROFILES["gpu"].curve_sizes == (50, 100, 250, 500, 1000, 5000) and PROFILES["gpu"].curve_seeds == (0, 1, 2)


def test_study_profile_covers_cifar10_and_falls_back_to_cpu_for_the_rest():
    from course_lib.experiments.plan import comparison_specs, drloc_ablation, drloc_specs

    study = PROFILES["study"]
    assert study.for_dataset("cifar10") is study
    assert study.for_dataset("svhn") is PROFILES["cpu"] and study.for_ablation() is PROFILES["cpu"]
    assert {s.profile.name for s in comparison_specs(study, "cifar100").values()} == {"cpu"}
    assert {s.profile.name for s in drloc_specs(study, "cifar10").values()} == {"study"}
    assert drloc_specs(study, "cifar10")["ViT+DRLoc"].drloc_schedule == "official"
    assert {s.profile.name for s in drloc_ablation(study).values()} == {"cpu"}
    assert PROFILES["gpu"].for_dataset("svhn") is PROFILES["gpu"]


def test_a_run_loads_its_profiles_copy_of_the_data(monkeypatch):
    """The cpu profile's runs are defined on the committed samples: a JPEG copy on disk must not change them."""
    from course_lib.experiments import runs

    asked = []
    real = runs.load_dataset
    monkeypatch.setattr(runs, "load_dataset", lambda *a, **k: asked.append(k.get("source")) or real(
        *a, **{**k, "source": "samples"}))
    runs.load_data(runs.RunSpec("vit", "cifar10", PROFILES["cpu"]))
    runs.load_data(runs.RunSpec("vit", "cifar10", PROFILES["study"]))
    assert asked == ["samples", "samples", "jpeg", "jpeg"]


def test_a_full_data_profile_stops_before_training_when_it_gets_samples(tmp_path):
    """Offline, a gpu run would otherwise train on the 2,000 committed images under the gpu name."""
    from course_lib.data import DataUnavailableError
    from course_lib.experiments import runs

    with pytest.raises(DataUnavailableError) as error:
        runs.load_data(runs.RunSpec("vit", "cifar10", PROFILES["gpu"]), data_root=tmp_path)
    words = str(error.value)
    assert "Nothing was trained" in words and "KEEP_ON_DRIVE" in words and "gpu-samples" in words
    assert "2,000 of 50,000" in words
    train, test, _ = runs.load_data(runs.RunSpec("vit", "cifar10", PROFILES["gpu-samples"]), data_root=tmp_path)
    assert len(train) == 2000 and "committed real samples" in train.source
    assert runs.RunSpec("vit", "cifar10", PROFILES["gpu-samples"]).key.endswith("-gpu-samples-s0")
    assert get_profile("paper-samples").data_source == "samples" and not PROFILES["paper-samples"].full_data


@pytest.mark.parametrize("change", [{"epochs": 0}, {"train_images": -10}, {"test_images": 0}, {"batch_size": 0},
                                    {"evaluations": 0}, {"curve_sizes": (100, -1)}, {"curve_seeds": (-1,)},
                                    {"epochs": 2.5}, {"validation_per_class": 0}])
def test_a_profile_refuses_a_budget_that_trains_nothing(change):
    from dataclasses import replace

    with pytest.raises(ValueError, match=f"Profile 'cpu': .*{next(iter(change)).replace('_', '.')}"):
        replace(PROFILES["cpu"], **change)
