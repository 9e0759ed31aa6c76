"""A results table's caption names the profile whose runs it shows (a fallback as such) and their scale."""
from __future__ import annotations

from course_lib import comparisons, report
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


# ----------------------------------------------------------------------------------------------------------------
# Notebook 05: one DRLoc table per scheme of λ, each caption naming the scheme and every row's profile and scale

def _drloc_cell_tables(runs: dict, keys: list[str]) -> tuple[list, str]:
    """Run notebook 05's results cell on the given records: (the tables it displays, what it prints)."""
    import contextlib
    import io
    from pathlib import Path

    import nbformat

    from course_lib.data import DATASETS

    nb = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "05_drloc.ipynb", as_version=4)
    (source,) = [c.source for c in nb.cells if c.get("id") == "ec3158b4"]
    shown, out = [], io.StringIO()
    scope = {"runs": runs, "pairs": dict.fromkeys(keys), "report": report, "comparisons": comparisons,
             "display": shown.append,
             "title": lambda key: DATASETS[key].title}
    with contextlib.redirect_stdout(out):
        exec(source, scope)
    return shown, out.getvalue()


def _records(*keys):
    from pathlib import Path

    from course_lib.experiments.records import read_record

    folder = Path(report.__file__).parent / "records"
    return [read_record(folder / f"{key}.json") for key in keys]


def test_notebook_05_puts_runs_trained_under_different_schemes_in_different_tables():
    import re

    vit10, drloc10, vit100, drloc100, vit_svhn, drloc_svhn = _records(
        "cifar10-vit-course-study-s0", "cifar10-vit-drloc_l0.5_m64_official-course-study-s0",
        "cifar100-vit-course-cpu-s0", "cifar100-vit-drloc_l0.5_m64-course-cpu-s0",
        "svhn-vit-course-cpu-s0", "svhn-vit-drloc_l0.5_m64-course-cpu-s0")
    runs = {("cifar10", "ViT"): vit10, ("cifar10", "ViT+DRLoc"): drloc10, ("cifar100", "ViT"): vit100,
            ("cifar100", "ViT+DRLoc"): drloc100, ("svhn", "ViT"): vit_svhn, ("svhn", "ViT+DRLoc"): drloc_svhn}
    tables, printed = _drloc_cell_tables(runs, ["cifar10", "cifar100", "svhn"])
    assert [[row[0] for row in t.rows] for t in tables] == [["CIFAR-10"], ["CIFAR-100", "SVHN"]]
    official, constant = (t.caption for t in tables)
    assert official.startswith("Top-1 test accuracy, profile 'study'; ViT+DRLoc with λ 0.5 on the official schedule")
    assert "CIFAR-10: profile 'study', 500 images per class, 29 epochs, 10,000 test images" in official
    assert "held constant" not in official and "official" not in constant
    assert constant.startswith("Top-1 test accuracy, profile 'cpu'; ViT+DRLoc with λ 0.5 held constant")
    assert "CIFAR-100: profile 'cpu', 9 images per class, 15 epochs, 916 test images" in constant
    assert re.search(r"SVHN: profile 'cpu', 74 images per class, 15 epochs, 200 test images \(a stand-in", constant)
    assert "2 schemes of λ, one table each" in printed
    assert "ViT+DRLoc with λ 0.5 held constant:\n  CIFAR-100: ViT+DRLoc vs ViT" in printed   # verdicts by scheme


def test_notebook_05_one_scheme_gives_one_table():
    vit10, drloc10 = _records("cifar10-vit-course-study-s0", "cifar10-vit-drloc_l0.5_m64_official-course-study-s0")
    tables, printed = _drloc_cell_tables({("cifar10", "ViT"): vit10, ("cifar10", "ViT+DRLoc"): drloc10}, ["cifar10"])
    assert len(tables) == 1 and "schemes of λ" not in printed
