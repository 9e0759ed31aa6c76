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


def test_budget_per_class_and_overrides():
    smoke = PROFILES["smoke"]
    assert smoke.train_per_class(10) == 20 and smoke.train_per_class(100) == 2 and smoke.train_per_class(1000) == 1
    assert PROFILES["gpu"].train_per_class(10) is None
    assert smoke.with_overrides(epochs=3).epochs == 3 and smoke.epochs == 1
