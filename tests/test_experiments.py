"""The experiment runner: run identity, budgets in steps, records, the plan per profile, the queue and the CLI."""
import json
import re
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from course_lib import experiments as ex
from course_lib.data import sources
from course_lib.drloc import official_drloc_weight
from course_lib.experiments import RunSpec, __main__ as cli, notebooks as nb_runner, of_record, queue, records, runs
from course_lib.experiments.records import Record
from course_lib.files import atomic_write_json
from course_lib.profiles import PROFILES
from course_lib.recipes import steps_per_epoch

CPU, GPU, PAPER, SMOKE = (PROFILES[n] for n in ("cpu", "gpu", "paper", "smoke"))
TINY = replace(SMOKE, test_images=40)          # the smoke budget, evaluated on 40 test images: fast tests


def test_keys_are_unique_and_file_name_safe():
    specs = [s for chapter in ex.plan(GPU).values() for s in chapter]
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    assert all(set(k) <= set("abcdefghijklmnopqrstuvwxyz0123456789._-") for k in keys)
    assert RunSpec("vit", "cifar10", GPU, drloc=True).key == "cifar10-vit-drloc_l0.5_m64-course-gpu-s0"


def test_specs_take_a_profile_object_and_validate():
    with pytest.raises(TypeError, match="must be a Profile.*get_profile\\('gpu'\\)"):
        RunSpec("vit", "cifar10", "gpu")
    with pytest.raises(ValueError, match="Unknown model"):
        RunSpec("vgg", "cifar10", GPU)
    with pytest.raises(ValueError, match="Unknown data set"):
        RunSpec("vit", "mnist", GPU)
    with pytest.raises(ValueError, match="Unknown recipe"):
        RunSpec("vit", "cifar10", GPU, recipe="mine")
    spec = RunSpec("vit", "cifar10", GPU, drloc=True, train_per_class=500, seed=2)
    assert RunSpec.from_dict(spec.to_dict()) == spec and spec.to_dict()["profile"] == "gpu"


def test_a_budget_equal_to_the_default_is_the_same_run():
    assert RunSpec("vit", "cifar10", CPU, train_per_class=100) == RunSpec("vit", "cifar10", CPU)
    assert RunSpec("vit", "cifar10", GPU, train_per_class=5000) == RunSpec("vit", "cifar10", GPU)
    assert RunSpec("vit", "cifar10", GPU, train_per_class=500).train_per_class == 500


@pytest.mark.parametrize("n", [50, 100, 250, 500, 1000])
def test_smaller_data_gets_the_same_optimiser_steps(n):
    """No cap: every point of the curve trains for the full run's number of steps (to within one epoch)."""
    full = ex.training_config(RunSpec("vit", "cifar10", GPU))
    full_steps = full.epochs * steps_per_epoch(50_000, full.batch_size)
    small = ex.training_config(RunSpec("vit", "cifar10", GPU, train_per_class=n))
    per_epoch = steps_per_epoch(10 * n, small.batch_size)
    assert abs(small.epochs * per_epoch - full_steps) <= per_epoch / 2 + 1
    assert (full.epochs, full_steps) == (10, 1950)


def test_recipes_per_profile():
    assert ex.training_config(RunSpec("resnet18", "cifar10", SMOKE)).batch_size == 64
    paper = ex.training_config(RunSpec("vit_paper", "cifar10", PAPER))
    assert (paper.epochs, paper.batch_size, paper.lr, paper.optimizer, paper.hflip, paper.normalize) == \
        (500, 100, 1e-4, "adam", True, False)
    liu = ex.training_config(ex.drloc_specs(PAPER, "cifar10")["ViT+DRLoc"])
    assert (liu.epochs, liu.warmup_epochs, liu.schedule_epochs, liu.mixup_alpha, liu.drop_path) == \
        (100, 20.0, 300.0, 0.8, 0.1)
    short = ex.training_config(RunSpec("vit", "cifar10", CPU, recipe="liu2021"))
    assert (short.epochs, short.warmup_epochs, short.schedule_epochs) == (15, 3.0, 45.0)


def test_plan_covers_every_chapter_without_duplicates():
    chapters = ex.plan(CPU)
    assert set(chapters) == {"ch1", "ch4", "ch5", "results"}
    flat = [s for specs in chapters.values() for s in specs]
    assert len(flat) == len(set(flat))
    assert {(s.model, s.dataset) for s in chapters["ch1"]} == {(m, d) for m in ("vit", "resnet18")
                                                              for d in ("cifar10", "cifar100", "svhn")}
    ablation = ex.drloc_ablation(CPU)
    assert {"no DRLoc", "default", "λ = 0.1", "λ = 1", "m = 16", "m = 32", "λ official",
            "tokens after the final norm"} == set(ablation)
    assert ablation["λ official"].drloc_schedule == "official" and ablation["default"].drloc_pairs == 64
    assert ablation["tokens after the final norm"].drloc_tokens == "post_norm"


def test_the_paper_profile_trains_the_papers_models_and_recipes():
    chapters = ex.plan(PAPER)
    assert {(s.model, s.recipe) for s in chapters["ch1"]} == {("vit_paper", "zhu2023"), ("resnet18", "zhu2023")}
    assert {s.recipe for s in chapters["ch5"]} == {"liu2021"} and {s.drloc for s in chapters["ch5"]} == {False, True}
    assert {s.drloc_schedule for s in chapters["ch5"] if s.drloc} == {"official", "constant"}   # + the ablation
    assert all(s.model == "vit" for s in chapters["ch5"])          # DRLoc transfers to ViT-Lite on 32x32
    curve = ex.curve_specs(PAPER)
    assert set(curve) == {"ViT (paper)", "ResNet-18", "ViT", "ViT+DRLoc"} and len(curve["ViT"][50]) == 3


def test_train_run_records_reuses_and_says_what_it_trains(tmp_path, capsys):
    spec = RunSpec("vit", "svhn", TINY, train_per_class=3, epochs=1)
    result = ex.train_run(spec, root=tmp_path)
    assert "training ViT now" in capsys.readouterr().out
    path = tmp_path / "records" / f"{spec.key}.json"
    raw = json.loads(path.read_text())
    assert raw["format"] == 2 and not {"test_correct", "spec", "recipe", "preprocess"} & set(raw)   # said once
    record = Record.from_dict(raw)
    assert record["final_test_acc"] == result.history.test_acc[-1]
    assert record["train_images"] == 30 and "committed real samples" in record["train_source"]
    assert record["steps"] == 1 and record["images_per_class"] == 3 and len(record["test_correct"]) == 10
    assert record["preprocess"]["normalize"] and result.preprocess.normalized
    assert record["environment"]["torch"] == torch.__version__ and record["spec"]["dataset"] == "svhn"
    assert (tmp_path / "checkpoints" / record["checkpoint"]).exists()
    # A second call loads the finished checkpoint: same weights, same record, nothing retrained or announced.
    again = ex.train_run(spec, root=tmp_path)
    assert "training" not in capsys.readouterr().out and again.record == record
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                 again.model.state_dict().values()))
    assert ex.get_record(spec, root=tmp_path) == record
    assert [r["key"] for r in ex.load_records(tmp_path, profile="smoke") if r["key"] == spec.key] == [spec.key]
    # A record made before a series was kept (format 1 had no val_correct, say) is upgraded from the finished
    # checkpoint, but keeps who trained it, when and where: nothing was trained now.
    older = {**raw, "environment": {**raw["environment"], "git_commit": "0ld", "date": "2026-01-01 00:00 UTC"},
             "history": {k: v for k, v in raw["history"].items() if k != "test_loss"}}
    path.write_text(json.dumps(older))
    upgraded = ex.train_run(spec, root=tmp_path).record
    assert "training" not in capsys.readouterr().out
    assert upgraded.history == record.history and upgraded.environment == older["environment"]
    assert json.loads(path.read_text())["history"] == raw["history"]
    # A work folder from before records/ was named so keeps its runs: its results/ is read (never written).
    (tmp_path / "records").rename(tmp_path / "results")
    kept = ex.get_record(spec, root=tmp_path, train_missing=False)
    assert kept.history == record.history and kept.environment == older["environment"]
    assert [r["key"] for r in ex.load_records(tmp_path, profile="smoke") if r["key"] == spec.key] == [spec.key]


def test_a_model_trained_on_other_data_is_never_reused(tmp_path, monkeypatch, capsys):
    """Defect: a samples-trained checkpoint was loaded as the run on the full data set, and its record kept."""
    spec = RunSpec("vit", "svhn", TINY, train_per_class=3, epochs=1)
    first = ex.train_run(spec, root=tmp_path, progress=False)
    real = sources.load_samples

    def other_copy(name, split):          # "the full data set appeared": other pixels under the same spec
        data = real(name, split)
        return replace(data, images=255 - data.images, source="another copy of " + data.source)

    monkeypatch.setattr(sources, "load_samples", other_copy)
    second = ex.train_run(spec, root=tmp_path)
    out = capsys.readouterr().out
    assert "training ViT now" in out and "replacing the record" in out and "train_data" in out
    assert second.record["identity_hash"] != first.record["identity_hash"]
    assert second.record["train_source"].startswith("another copy")
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 2          # the other run's model is kept too


def test_a_corrupt_record_is_named_moved_aside_and_retrained(tmp_path):
    spec = RunSpec("vit", "svhn", TINY, train_per_class=2, epochs=1)
    path = tmp_path / "records" / f"{spec.key}.json"
    path.parent.mkdir(parents=True)
    path.write_text("")                           # a kill during a plain write left 0 bytes
    with pytest.warns(records.RecordWarning, match=f"{spec.key}.json is damaged.*moved to"):
        assert ex.get_record(spec, root=tmp_path, train_missing=False) is None
    assert not path.exists() and list(path.parent.glob("*.corrupt-*"))
    record = ex.get_record(spec, root=tmp_path)                      # trained again, not blocked
    assert record["key"] == spec.key and path.exists()
    assert [r["key"] for r in ex.load_records(tmp_path, folders=[tmp_path / "records"])] == [spec.key]


def test_a_damaged_checkpoint_is_moved_aside_and_the_run_retrained(tmp_path, capsys):
    spec = RunSpec("vit", "svhn", TINY, train_per_class=2, epochs=2)
    run = runs.prepare(spec, root=tmp_path)
    run.checkpoint.parent.mkdir(parents=True)
    run.checkpoint.write_bytes(b"PK\x03\x04 truncated")
    result = runs.execute(run)
    assert "is damaged" in capsys.readouterr().out and len(result.history) == 2
    assert list(run.checkpoint.parent.glob("*.corrupt-*"))


def test_drloc_runs_carry_the_extra_loss_and_its_schedule(tmp_path):
    spec = RunSpec("vit", "cifar10", TINY, drloc=True, drloc_pairs=4, drloc_schedule="official",
                   train_per_class=2, epochs=3)
    result = ex.train_run(spec, root=tmp_path, progress=False)
    assert "drloc" in result.history.extra and result.record["label"] == "ViT+DRLoc"
    assert result.history.extra_weight["drloc"] == pytest.approx(
        [official_drloc_weight(e, 0.5, 0.6, 9.0) for e in range(3)])
    assert result.record.identity["extra_losses"][0]["settings"]["schedule"] == "official"


@pytest.mark.parametrize("recipe,normalized", [("course", True), ("zhu2023", False)])
def test_analysis_gets_the_preprocessing_the_model_was_trained_with(tmp_path, recipe, normalized):
    from course_lib.data import load_dataset

    spec = RunSpec("vit", "cifar10", TINY, recipe=recipe, train_per_class=2, epochs=1)
    result = ex.train_run(spec, root=tmp_path, progress=False)
    assert result.preprocess.normalized is normalized and result.record["preprocess"]["normalize"] is normalized
    images = load_dataset("cifar10", "test", source="samples").images[:4]
    x = result.preprocess(images)
    if normalized:
        assert x.min() < -0.5
    else:
        assert torch.equal(x, images.float() / 255)
    seen = []
    handle = result.model.patch_embed.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    from course_lib.rollout import model_rollout

    model_rollout(result.model, x)
    handle.remove()
    assert torch.equal(seen[0], x)


def test_setting_and_scale_descriptions(tmp_path):
    text = ex.describe_setting(CPU)
    assert "profile 'cpu'" in text and "CPU" in text and "torch" in text
    spec = RunSpec("vit", "svhn", TINY, train_per_class=2, epochs=1)
    record = ex.train_run(spec, root=tmp_path, progress=False).record
    box = ex.describe_scale([record])
    assert "1 training run(s)" in box and "2 training images per class" in box and "40 test images" in box
    assert "known to about ±15 points on 40 test images" in box


def test_the_queue_meets_its_deadline_and_continues(tmp_path, monkeypatch):
    """A 20-second deadline: runs that fit are trained and written out at once, the rest skipped; the same call again
    skips what is done and continues. The clock and the measured speed are fixed, so the test does not depend on
    how busy the machine is."""
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(queue, "measure_throughput", lambda *args: 100.0)      # images per second
    monkeypatch.setattr(of_record, "OF_RECORD_DIR", tmp_path / "out")          # what a GPU loan would commit
    clock = iter([0.0] + [5.0] * 10)
    specs = [RunSpec("vit", "cifar10", TINY, train_per_class=2, epochs=1, seed=s) for s in (0, 1)]
    big = RunSpec("resnet18", "cifar10", TINY, train_per_class=20, epochs=400)
    out = tmp_path / "out"
    report = queue.run_queue(specs[:1] + [big] + specs[1:], 20.0, out, of_record={specs[0]},
                             clock=lambda: next(clock))
    assert report.outcome[specs[0].key].startswith("trained") and report.outcome[specs[1].key].startswith("trained")
    assert re.fullmatch(r"skipped: needs ~\d{3} s, 15 s left", report.outcome[big.key])   # 400 x 200 images
    assert (out / "records.tar.gz").exists() and len(list(out.iterdir())) <= 8
    entry = json.loads((out / "manifest.json").read_text())[specs[0].key]
    state = torch.load(out / entry["parts"][0], weights_only=False)
    assert state["key"] == specs[0].key and all(v.dtype == torch.float16 for v in state["model"].values()
                                                if v.is_floating_point())
    again = queue.run_queue(specs, 20.0, out, clock=lambda: 0.0)
    assert set(again.outcome.values()) == {"done before"}
    # Elsewhere, without the checkpoints: the fp16 checkpoint of record is loaded instead of training again.
    for path in (tmp_path / "checkpoints").glob("*.pt"):
        path.unlink()
    loaded = runs.train_run(specs[0], root=tmp_path, progress=False)
    record = json.loads((tmp_path / "records" / f"{specs[0].key}.json").read_text())
    assert loaded.record.to_dict() == record and not list((tmp_path / "checkpoints").glob("*.pt"))
    assert torch.equal(loaded.model.head.weight, state["model"]["head.weight"].float())


def test_priority_queue_order():
    order, of_record = queue.priority_queue(GPU)
    assert [s.label for s in order[:3]] == ["ViT", "ResNet-18", "ViT+DRLoc"] and set(order[:3]) == of_record
    assert order[3].train_per_class == 50 and order[3].seed == 0                  # then the first rung
    seeds = [s.seed for s in order if s.train_per_class is not None and not s.drloc and s.model == "resnet18"]
    assert seeds == sorted(seeds)                                                  # seed 0 first, then 1, then 2


def test_cli_rejects_bad_settings_at_start(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit):
        cli.main(["run", "--profile", "smoke", "--only", "ch4"])
    assert "COURSE_WORKDIR points at" in capsys.readouterr().err and not (tmp_path / "checkpoints").exists()


def test_cli_rejects_an_unknown_profile_in_the_environment_without_a_trace(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "bogus")
    with pytest.raises(SystemExit):
        cli.main(["list"])
    err = capsys.readouterr().err
    assert "COURSE_PROFILE: Unknown profile 'bogus'" in err and "Traceback" not in err


def test_cli_rejects_unknown_data_sets_and_chapters(capsys):
    for argv, message in [(["list", "--datasets", "mnist"], "unknown data set"),
                          (["list", "--only", "ch9"], "unknown chapter"),
                          (["run", "--deadline-s", "10"], "needs --out"),
                          (["run", "--deadline-s", "10", "--out", "o", "--only", "ch1"], "drop --only")]:
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert message in capsys.readouterr().err
    cli.main(["list", "--profile", "paper", "--only", "ch1"])
    listing = capsys.readouterr().out
    assert "cifar10-vit_paper-zhu2023-paper-s0" in listing and "ViT (paper)" in listing and "ch5" not in listing


def test_run_notebooks_passes_the_budget_through_an_explicit_environment(monkeypatch, tmp_path):
    """A stored papermill `profile = ...` cell would pin nbval in CI to that budget: only `datasets` is injected, and
    the caller's environment is left alone."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, env, check: calls.append((cmd, env)))
    monkeypatch.setattr(nb_runner, "clean_notebook", lambda path: None)
    before = dict(os.environ)
    nb_runner.run_notebooks("gpu", ["01_vit_vs_resnet", "02_attention_rollout"], str(tmp_path), ["cifar10"])
    assert dict(os.environ) == before
    (cmd1, env1), (cmd2, env2) = calls
    assert env1["COURSE_PROFILE"] == "gpu" and env1["COURSE_DATA_ROOT"] == str(tmp_path.resolve())
    assert cmd1[cmd1.index("-y") + 1] == json.dumps({"datasets": ["cifar10"]}) and "-y" not in cmd2
    assert "profile" not in " ".join(cmd1)
    monkeypatch.delenv("COURSE_DATA_ROOT", raising=False)        # no --data-root: this process's folder, resolved
    monkeypatch.delenv("COURSE_WORKDIR", raising=False)
    monkeypatch.chdir(tmp_path)
    nb_runner.run_notebooks("cpu", ["01_vit_vs_resnet"])
    assert calls[-1][1]["COURSE_DATA_ROOT"] == str((tmp_path / "data").resolve())


def test_clean_notebook_drops_widget_state_and_local_paths(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    nb.metadata["papermill"] = {"input_path": "/work/x.ipynb", "output_path": "/work/x.ipynb", "duration": 1}
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {},
                                                            "text/plain": "VBox()"}),
                    nbformat.v4.new_output("stream", text="kept")]
    nb.cells.append(cell)
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    nb_runner.clean_notebook(path)
    out = nbformat.read(path, as_version=4)
    assert "widgets" not in out.metadata and out.metadata.papermill == {"duration": 1}
    assert [o.output_type for o in out.cells[0].outputs] == ["stream"]


def test_records_of_record_ship_with_the_package():
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "records/*.json" in config["tool"]["setuptools"]["package-data"]["course_lib"]
    assert records.RECORDS_OF_RECORD.name == "records" and records.RECORDS_OF_RECORD.parent.name == "course_lib"


def test_records_are_written_atomically(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


@pytest.mark.slow      # a whole GPU session's script, training in a subprocess
def test_the_gpu_wrapper_runs_end_to_end_on_the_cpu(tmp_path):
    """tools/gpu_session.sh with the smoke budget: exits cleanly, says what happened to every run of the queue."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "COURSE_WORKDIR": str(tmp_path), "PROFILE": "smoke",
           "DEADLINE_S": "30", "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(root / "tools" / "gpu_session.sh"), "queue"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    order, _ = queue.priority_queue(SMOKE)
    assert "queue:" in log and all(f"  {s.key}: " in log for s in order)


def test_the_gpu_wrapper_runs_the_second_study_first_and_returns_what_landed(tmp_path):
    """The default stage works down the second study's queue with the study driver (here a stand-in python that
    records its arguments and lands one record), stops when a pass lands nothing, and packs what landed."""
    root = Path(__file__).resolve().parents[1]
    copy = tmp_path / "repo"
    (copy / "tools").mkdir(parents=True)
    (copy / "course_lib" / "records").mkdir(parents=True)
    (copy / "tools" / "gpu_session.sh").write_text((root / "tools" / "gpu_session.sh").read_text())
    fake = tmp_path / "python"
    fake.write_text("#!/bin/bash\necho \"$@\" >> calls.txt\n"
                    "n=$(wc -l < calls.txt); [ $n -eq 1 ] && echo '{}' > course_lib/records/new-run.json; exit 0\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "DEADLINE_S": "120", "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(copy / "tools" / "gpu_session.sh")], env=env, capture_output=True,
                          text=True, timeout=60, cwd=copy)
    assert done.returncode == 0, done.stderr[-2000:]
    calls = (copy / "calls.txt").read_text().splitlines()
    assert len(calls) == 2 and all(c.startswith("-m course_lib.experiments.study run --queue study2") for c in calls)
    import tarfile
    with tarfile.open(tmp_path / "out" / "study2-records.tar.gz") as tar:
        assert tar.getnames() == ["course_lib/records/new-run.json"]
