"""Reliability, fourth round (issue 32): verdicts that refuse what they cannot mean, checkpoints that never run code
when loaded, temporary files that a killed writer leaves, downloads that trickle, notebook parameters and checkers.
Each test reproduces a probe of the issue and fails without its fix. (The study driver's probes:
tests/test_study_driver.py.)"""
import http.server
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from course_lib import files, internals, report, stats
from course_lib.cka import cka_from_grams
from course_lib.data import download
from course_lib.drloc import constant_baseline
from course_lib.exercises import check_rollout_step
from course_lib.locality import mean_attention_distance
from course_lib.parameters import ParameterError, check_parameters

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------------------
# Verdicts on impossible inputs

def test_identical_predictions_on_two_images_are_never_bounded_past_100_points():
    same = torch.tensor([True, False])
    c = stats.paired_difference(same, same.clone())
    assert -100 < c.low and c.high < 100                     # was ±150 points (the rule of three, 3/n, at n = 2)
    assert c.high == pytest.approx(100 * (1 - 0.05 ** 0.5))  # P(no disagreement in 2 | rate) = 5 %
    assert not c.significant


def test_mean_interval_of_equal_values_is_refused_not_zero_width():
    with pytest.raises(ValueError, match="all equal.*test_images="):
        stats.mean_interval([60.0, 60.0, 60.0])
    mean, low, high = stats.mean_interval([60.0, 60.0, 60.0], test_images=1000)   # the test-set sampling remains
    assert low < mean < high


@pytest.mark.parametrize("call", [
    lambda: stats.accuracy_verdict("ViT", 50.0, 100, 0),                     # was ZeroDivisionError
    lambda: stats.accuracy_verdict("ViT", 50.0, 0, 10),
    lambda: stats.accuracy_verdict("ViT", 50.0, -100, 10),
    lambda: stats.accuracy_verdict("ViT", 50.0, 100, 10, class_counts=[-1] + [11] * 9),
    lambda: stats.accuracy_verdict("ViT", 50.0, 100, 10, class_counts=[2.5] + [10] * 9),
    lambda: stats.mcnemar_exact(-1, 3),                                      # was a scipy error
    lambda: stats.mcnemar_exact(2.5, 3),
    lambda: stats.wilson_interval(2.5, 10),                                  # was a silent interval
    lambda: stats.clopper_pearson_interval(1, 2.5),
    lambda: stats.unpaired_difference(50.0, 40.0, 0, 100),                   # was ZeroDivisionError
    lambda: stats.accuracy_variance(50.0, 0),
    lambda: stats.mean_interval([50.0, 60.0], test_images=-100),
    lambda: stats.seed_difference([50.0, 60.0], [40.0, 45.0], test_images=2.5),
])
def test_impossible_counts_get_a_clear_error_naming_them(call):
    with pytest.raises(ValueError, match="must be a whole number of at least"):
        call()


def test_counts_as_numpy_integers_and_whole_floats_are_counts():
    assert stats.wilson_interval(np.int64(5), np.int64(10)) == stats.wilson_interval(5, 10)
    assert stats.mcnemar_exact(3.0, 5.0) == stats.mcnemar_exact(3, 5)


def test_locality_verdict_refuses_negative_distances():
    with pytest.raises(ValueError, match="never negative"):
        internals.locality_verdict(torch.full((3, 4), -2.0), uniform=10.0)     # was "12 of 12 heads attend locally"


def test_mean_attention_distance_refuses_scores_before_the_softmax():
    logits = torch.randn(2, 3, 17, 17) * 1e13
    with pytest.raises(ValueError, match="not attention weights.*after the softmax"):
        mean_attention_distance([logits], grid_size=4)                        # was -5e13 px


def test_a_head_on_the_class_token_only_is_not_the_most_local():
    weights = torch.randn(2, 3, 17, 17).softmax(-1)
    weights[:, 0] = 0
    weights[:, 0, :, 0] = 1                                                   # head 0: the class token only
    d = mean_attention_distance([weights, weights, weights], grid_size=4, patch_size=4)
    assert d[:, 0].isnan().all() and (d[:, 1:] > 0).all()                      # was 0 px: "the most local"
    words = internals.locality_verdict(d, uniform=10.0)
    assert "of 2 heads in blocks 1-1" in words and "1 attend to the class token only" in words


def test_mean_attention_distance_still_matches_the_renormalised_definition():
    weights = torch.randn(2, 3, 10, 10).softmax(-1)
    p = weights[..., 1:, 1:].double()
    p = p / p.sum(-1, keepdim=True)
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], 1).double() * 4
    expected = (p * torch.cdist(centres, centres)).sum(-1).mean(dim=(0, 2))
    torch.testing.assert_close(mean_attention_distance([weights], 3, 4)[0], expected)


def test_drloc_learned_refuses_a_negative_loss():
    from course_lib.experiments import drloc_specs
    from course_lib.profiles import get_profile

    from test_report import fake_record

    spec = drloc_specs(get_profile("cpu"), "cifar10")["ViT+DRLoc"]
    with pytest.raises(ValueError, match="negative, which an L1 loss never is"):
        report.drloc_learned(fake_record(spec, 30, drloc=[0.3, -0.1]))     # was "learned"
    with pytest.raises(ValueError, match="k must be a whole number of at least 2"):
        constant_baseline(0)


def test_cka_of_a_gram_without_structure_is_refused_not_nan():
    features = torch.randn(8, 3, dtype=torch.float64)
    for unbiased in (False, True):
        with pytest.raises(ValueError, match="K has no similarity structure"):
            cka_from_grams(torch.ones(8, 8), features @ features.T, unbiased)   # was NaN


def test_profiles_with_records_lists_every_profile_that_has_some(monkeypatch):
    found = ["gpu-samples", "paper-samples", "smoke", "a-new-one"]
    monkeypatch.setattr(report, "load_records", lambda: [{"spec": {"profile": p}} for p in found])
    assert report.profiles_with_records() == ["gpu-samples", "paper-samples", "smoke", "a-new-one"]


# --------------------------------------------------------------------------------------------------------------
# Checkpoints never run code when loaded; killed writers leave nothing behind

class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_code_is_refused_unread(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "model.pt"
    torch.save({"model": RunsCode(marker)}, path)
    with pytest.raises(files.CorruptFileError, match="could run code, so it was not loaded"):
        files.safe_torch_load(path)
    assert not marker.exists()


def test_a_finished_training_checkpoint_loads_with_weights_only(tmp_path, cifar10_samples):
    from course_lib.checkpoints import load_weights
    from course_lib.data import subset, take
    from course_lib.models import create_model
    from course_lib.recipes import RECIPES
    from course_lib.train import fit

    data, test = subset(cifar10_samples[0], 2, seed=0), take(cifar10_samples[1], 20, seed=0)
    model = create_model("vit", num_classes=10)
    fit(model, data, test, RECIPES["course"].with_epochs(1), checkpoint=tmp_path / "c.pt", device="cpu",
        progress=False)
    again = load_weights(create_model("vit", num_classes=10), tmp_path / "c.pt")
    torch.testing.assert_close(again.state_dict(), model.state_dict())


def test_the_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "run.pt"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = files._writer_tag().rsplit("-", 1)[0]
    dead = tmp_path / f".run.pt.{host}-{gone.stdout.strip()}.abc123.tmp"
    alive = tmp_path / f".run.pt.{host}-{os.getpid()}.def456.tmp"
    foreign_old, foreign_new = (tmp_path / f".run.pt.otherhost-{n}.x{n}.tmp" for n in (1, 2))
    for leftover in (dead, alive, foreign_old, foreign_new):
        leftover.write_bytes(b"x" * 1000)
    os.utime(foreign_old, (time.time() - 7 * 3600,) * 2)
    files.atomic_torch_save({"w": torch.ones(2)}, target)
    assert not dead.exists() and not foreign_old.exists()             # was: every kill left one, forever
    assert alive.exists() and foreign_new.exists()                    # a writer still at work keeps its file
    assert torch.load(target, weights_only=True)["w"].sum() == 2


# --------------------------------------------------------------------------------------------------------------
# A download that trickles is cut off

class Trickle(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "150")
        self.end_headers()
        try:
            for _ in range(150):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_a_trickling_download_is_given_up_at_its_deadline(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/file"
    start = time.monotonic()
    try:
        with pytest.raises(download.TooSlowError, match=r"did not finish within 1 s.*Limits\(deadline_s="):
            download.fetch(url, tmp_path / "file", "a trickle", limits=download.Limits(timeout_s=5, min_rate=0,
                                                                                       deadline_s=1.0))
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - start < 5                                # was: 150 bytes in 76 s
    assert (tmp_path / "file.part").exists()                           # kept, so a later try resumes


@pytest.mark.parametrize("field", ["timeout_s", "window_s", "deadline_s", "min_rate"])
def test_download_limits_must_be_finite(field):
    with pytest.raises(ValueError, match=f"Limits.{field} must be a finite number"):
        download.Limits(**{field: math.nan})


# --------------------------------------------------------------------------------------------------------------
# Notebook parameters and exercise checkers

@pytest.mark.parametrize("parameters, named", [
    ({"vit_model": "resnet18"}, "vit_model = 'resnet18': must be one of"),   # was "ResNet-18 vs ResNet-18"
    ({"epochs": 0}, "epochs = 0"), ({"train_images": -10}, "train_images = -10"),
    ({"test_images": 0}, "test_images = 0"), ({"datasets": []}, "datasets = []"),
    ({"datasets": ["cifar10", "mnist"]}, "datasets = "), ({"profile": "gpu2"}, "profile = 'gpu2'"),
    ({"vit_modle": "vit"}, "vit_modle is no parameter"),
])
def test_a_parameter_the_notebook_cannot_mean_is_refused(parameters, named):
    with pytest.raises(ParameterError, match=named.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        check_parameters(**parameters)


def test_notebook_01_checks_its_parameters_before_using_them():
    nb = json.loads((ROOT / "notebooks" / "01_vit_vs_resnet.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    at = next(i for i, c in enumerate(code) if "parameters" in c["metadata"].get("tags", []))
    parameters = {line.split("=")[0].strip() for line in "".join(code[at]["source"]).splitlines() if "=" in line}
    after = "".join(code[at + 1]["source"])
    start = after.index("\ncheck_parameters(") + 1                   # the call, over however many lines
    call = after[start:after.index(")", start) + 1]
    assert after.index(call) < after.index("get_profile(profile)")
    assert all(f"{name}={name}" in call for name in parameters)
    check_parameters(**{name: None for name in ("profile", "data_root", "vit_model", "recipe")},
                     datasets=["cifar10", "cifar100", "svhn"])     # the defaults pass


def test_a_checked_function_that_calls_exit_does_not_escape_the_checker(capsys):
    def answer(attention):
        sys.exit("done")

    assert check_rollout_step(answer) is False                          # was: SystemExit out of the checker
    assert "called exit() or sys.exit()" in capsys.readouterr().out
