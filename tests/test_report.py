import json

from course_lib import report
from course_lib.experiments import RunSpec, drloc_recipe, small_data_sizes


def fake_record(spec, acc):
    return {"key": spec.key, "spec": {"profile": spec.profile}, "label": spec.label, "final_test_acc": acc,
            "epochs": 3, "train_images": 1000, "train_seconds": 120.0, "train_source": "src-train",
            "test_source": "src-test", "environment": {"device": "dev", "torch": "t", "course_lib": "c",
                                                       "git_commit": "abc"}}


def write(tmp_path, spec, acc):
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / f"{spec.key}.json").write_text(json.dumps(fake_record(spec, acc)))


def test_tables_come_from_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    write(tmp_path, RunSpec("vit", "svhn", "cpu"), 40.0)
    write(tmp_path, RunSpec("resnet18", "svhn", "cpu"), 70.0)
    write(tmp_path, RunSpec("vit", "svhn", "cpu", drloc=True, recipe=drloc_recipe("cpu")), 45.5)
    table, summary = report.dataset_table("svhn", "cpu")
    assert [row[:2] for row in table.rows] == [["ViT", 40.0], ["ResNet-18", 70.0], ["ViT+DRLoc", 45.5]]
    assert "71.60 → 94.23" in table.rows[2][2]
    assert "ResNet-18 - ViT = +30.0" in summary and "DRLoc changes the ViT by +5.5" in summary
    for i, n in enumerate(small_data_sizes("cpu")):
        for model, drloc, base in [("resnet18", False, 50), ("vit", False, 30), ("vit", True, 35)]:
            write(tmp_path, RunSpec(model, "cifar10", "cpu", drloc=drloc, train_per_class=n), base + i)
    points = report.small_data_points("cpu")
    assert points["ViT+DRLoc"] == [(n, 35 + i) for i, n in enumerate(small_data_sizes("cpu"))]
    assert report.small_data_table(points).rows[0] == [25, 50, 30, 35]
    text = report.provenance([fake_record(RunSpec("vit", "svhn", "cpu"), 1.0)] * 2)
    assert "2 runs." in text and "src-train" in text and "commit abc" in text and "0.07 h" in text
