"""A results table's caption names the profile whose runs it shows (a fallback as such) and their scale."""
from __future__ import annotations

from course_lib import report
from course_lib.profiles import get_profile


def test_a_fallback_table_names_its_real_profile_and_scale():
    study = get_profile("study")
    caption = report.dataset_table("cifar100", study, include_drloc=False).caption
    assert caption.startswith("CIFAR-100, profile 'cpu' (the fallback of 'study'")
    assert "9 training images per class, 916 test images" in caption
    svhn = report.dataset_table("svhn", study, include_drloc=False).caption
    assert "74 training images per class, 200 test images (a stand-in drawn from SVHN's training split)" in svhn


def test_a_profile_that_covers_the_data_set_is_named_alone():
    cpu = get_profile("cpu")
    caption = report.dataset_table("cifar100", cpu, include_drloc=False).caption
    assert caption.startswith("CIFAR-100, profile 'cpu':") and "fallback" not in caption
