"""Reliability: each defect found by probing the course as a hostile but fair user would, reproduced and fixed.

Where a case is tested in the module of the code it concerns, it is named here rather than repeated:

1. A saved model reused for other data or settings: ``test_experiments.test_a_model_trained_on_other_data_is_never_reused``,
   ``test_train.test_a_checkpoint_of_another_run_is_never_resumed``; and below, the full-data case end to end.
2. Records lost by a kill during a write, blocking every later run: ``test_runtime.test_atomic_writes_*``,
   ``test_experiments.test_a_corrupt_record_is_named_moved_aside_and_retrained``.
3. Two runs of one spec colliding: ``test_runtime.test_two_writers_never_give_a_reader_a_mixed_or_partial_checkpoint``,
   ``test_runtime.test_a_second_process_waits_for_the_lock_and_says_why``; and below, two processes training.
4. Hyper-parameters that train garbage: ``test_train.test_settings_that_would_train_garbage_are_refused``,
   ``test_train.test_a_non_finite_extra_term_is_named``, ``test_drloc.test_bad_arguments``.
5. Unbiased CKA on shifted or constant features: ``test_cka.test_a_constant_offset_does_not_change_cka``,
   ``test_cka.test_constant_or_non_finite_features_are_refused_by_name``.
6. Corrupt inputs with traces that name nothing: below.
7. ActivationRecorder order inside the ``with`` block: ``test_hooks.test_activations_in_layer_order_inside_the_with_block``.
8. The command line and the environment: ``test_experiments.test_cli_rejects_unknown_data_sets_and_chapters``,
   ``test_runtime.test_unclear_flags_and_file_folders_are_refused``, ``test_runtime.test_course_offline_values``,
   ``test_runtime.test_a_dangling_link_or_a_trailing_newline_in_a_folder_setting``; and below, bad options.
9. Exercise checks that call NaN correct: ``test_exercises.test_a_nan_answer_is_wrong_and_says_why``.
10. The cache and the sources: ``test_data.test_a_reader_never_deletes_a_cache_entry_that_is_being_written``,
    ``test_data.test_a_cache_entry_that_is_not_the_official_split_is_refused``,
    ``test_data.test_a_damaged_cache_entry_in_a_read_only_folder_is_reported_not_a_trace``,
    ``test_data.test_a_damaged_torchvision_copy_is_named_not_blamed_on_offline_mode``,
    ``test_data.test_a_source_that_failed_is_not_asked_again_for_every_split``,
    ``test_sources.test_an_svhn_test_copy_sorted_by_class_is_refused``,
    ``test_sources.test_decoding_the_hubs_pngs_shows_progress``.
11. Misuse of fit and evaluate: ``test_train.test_a_test_set_of_another_data_set_is_refused``,
    ``test_train.test_a_test_set_that_shares_images_with_the_training_set_is_warned_about``,
    ``test_train.test_a_full_disk_while_saving_a_checkpoint_names_the_folder_and_free_space``,
    ``test_train.test_evaluate_refuses_a_model_with_fewer_outputs_than_classes``; and below, float64 images.
"""
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from course_lib import experiments as ex
from course_lib.experiments import __main__ as cli
from course_lib.cka import cka_matrix
from course_lib.data import DataUnavailableError, load_dataset, sources, take
from course_lib.experiments import RunSpec
from course_lib.files import CorruptFileError
from course_lib.models import ViT, hybrid_vit, resnet18_cifar
from course_lib.profiles import PROFILES
from course_lib.rollout import attention_rollout, model_rollout
from course_lib.checkpoints import load_weights
from course_lib.train import fit

TINY = replace(PROFILES["smoke"], test_images=40)


# ----------------------------------------------------------------------------------------------------------------
# 1. The full data set appears after an offline run

def test_a_samples_trained_run_is_retrained_when_the_full_data_appears(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_ROOT", str(tmp_path / "data"))     # not the repository's data/ (it may hold data)
    spec = RunSpec("vit", "cifar10", TINY, train_per_class=2, epochs=1)
    offline = ex.train_run(spec, root=tmp_path, progress=False)
    assert "committed real samples" in offline.record["train_source"]
    real = sources.load_dataset

    def full_copy_present(name, split="train", root=None, source="auto", download=True):
        data = real(name, split, source="samples")
        return replace(data, images=data.images.flip(-1), source="official CIFAR-10 via torchvision (data)")

    monkeypatch.setattr(ex.runs, "load_dataset", full_copy_present)
    online = ex.train_run(spec, root=tmp_path)
    assert "official" in online.record["train_source"] and "training ViT now" in capsys.readouterr().out
    assert ex.get_record(spec, root=tmp_path)["identity_hash"] == online.record["identity_hash"]


# ----------------------------------------------------------------------------------------------------------------
# 3. Two processes asking for the same run

CHILD = """
import sys
from dataclasses import replace
from course_lib import experiments as ex
from course_lib.profiles import PROFILES
spec = ex.RunSpec("vit", "svhn", replace(PROFILES["smoke"], test_images=40), train_per_class=2, epochs=2)
print(ex.train_run(spec, root=sys.argv[1], progress=False).record["identity_hash"])
"""


@pytest.mark.slow      # two training processes
def test_two_processes_training_the_same_run_do_not_collide(tmp_path):
    """Both ask for the same run at once: one trains, the other waits for it and loads the result."""
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [child.communicate(timeout=600) for child in children]
    assert [c.returncode for c in children] == [0, 0], [err[-1500:] for _, err in outputs]
    assert len({out.strip().splitlines()[-1] for out, _ in outputs}) == 1
    assert sorted(p.suffix for p in (tmp_path / "checkpoints").iterdir()) == [".pt"]   # no stray .tmp or .lock


# ----------------------------------------------------------------------------------------------------------------
# 6. Corrupt files and bad inputs: a clear error that names the file or the fix

def test_a_truncated_checkpoint_names_itself(tmp_path, cifar10_samples):
    train, test = cifar10_samples
    model = ViT(dim=32, depth=1, heads=2)
    path = tmp_path / "run.pt"
    fit(model, take(train, 20), take(test, 10), epochs=1, checkpoint=path, progress=False)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match="run.pt is damaged.*delete"):
        load_weights(model, path)
    with pytest.raises(CorruptFileError, match="run.pt is damaged"):
        fit(model, take(train, 20), take(test, 10), epochs=2, checkpoint=path, progress=False)


def test_a_damaged_sample_file_names_itself_and_the_fix(tmp_path, monkeypatch):
    for shard in sources.SAMPLES_DIR.glob("svhn_train_*.npz"):
        shutil.copy(shard, tmp_path / shard.name)
    victim = next(tmp_path.glob("svhn_train_*.npz"))
    victim.write_bytes(victim.read_bytes()[:5000])               # a cut-short download of the repository
    monkeypatch.setattr(sources, "SAMPLES_DIR", tmp_path)
    with pytest.raises(DataUnavailableError, match=f"{victim.name} is damaged.*git checkout"):
        load_dataset("svhn", "train", source="samples")


def test_out_of_range_labels_in_a_sample_file_are_refused(tmp_path, monkeypatch):
    for shard in sources.SAMPLES_DIR.glob("cifar10_test_*.npz"):
        with np.load(shard) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["labels"][3] = 12
        np.savez(tmp_path / shard.name, **arrays)
    monkeypatch.setattr(sources, "SAMPLES_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"run from 0 to 12.*\[0, 10\).*damaged"):
        load_dataset("cifar10", "test", source="samples")


def test_a_damaged_jpeg_archive_names_itself(tmp_path):
    archive = tmp_path / "cifar10-jpeg" / "copy.tar.xz"
    archive.parent.mkdir()
    archive.write_bytes(b"\xfd7zXZ\x00\x00 cut short")
    with pytest.raises(DataUnavailableError, match="copy.tar.xz cannot be read.*Copy it again"):
        load_dataset("cifar10", "test", root=tmp_path, source="jpeg")


def test_raw_pixels_nan_attention_bad_sizes_and_wrong_class_counts(cifar10_samples):
    _, test = cifar10_samples
    model = ViT(dim=32, depth=1, heads=2).eval()
    raw = test.images[:2].float()                                 # 0..255, never preprocessed
    with pytest.raises(ValueError, match="raw 0..255 pixels.*preprocess"):   # refused where a reader's tensors come in
        model_rollout(model, raw)
    attention = torch.full((1, 2, 65, 65), 1 / 65)
    attention[0, 0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN|non-finite|infinite"):
        attention_rollout([attention])
    with pytest.raises(ValueError, match="batch_size"):
        cka_matrix(model, None, take(test, 8), batch_size=0)
    with pytest.raises(ValueError, match="whole number"):
        take(test, -5)
    for bad in (dict(heads=0), dict(patch_size=0), dict(img_size=-32)):
        with pytest.raises(ValueError, match="ViTConfig"):
            ViT(**bad)
    c100 = load_dataset("cifar100", "test", source="samples")
    with pytest.raises(ValueError, match="100 classes but the model has 10 outputs"):
        fit(model, c100, None, epochs=1, progress=False)


@pytest.mark.parametrize("make", [lambda: ViT(dim=32, depth=1, heads=2), resnet18_cifar, hybrid_vit])
def test_float64_or_float16_images_are_refused_by_name(make):
    model = make()
    for dtype in (torch.float64, torch.float16):
        for mode in (model.train, model.eval):
            mode()
            with pytest.raises(ValueError, match=f"float32 weights but got {dtype} images.*x.to"):
                model(torch.zeros(2, 3, 32, 32, dtype=dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):                    # autocast casts them itself: allowed
        assert model(torch.zeros(2, 3, 32, 32, dtype=torch.bfloat16)).shape == (2, 10)


# ----------------------------------------------------------------------------------------------------------------
# 8. Command-line options refused at start, before any training

def test_bad_command_line_options_are_refused_at_start(tmp_path, capsys, monkeypatch):
    def must_not_start(*args, **kwargs):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(cli, "train_run", must_not_start)
    monkeypatch.setattr(cli, "run_queue", must_not_start)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for argv, message in [
            (["run", "--device", "gpu"], "--device 'gpu' is not a device name. Use cuda"),
            (["run", "--deadline-s", "10", "--out", str(a_file)], "is a file, not a folder"),
            (["run", "--records-dir", str(a_file)], "--records-dir " + str(a_file) + " is a file"),
            (["run", "--deadline-s", "nan", "--out", str(tmp_path / "o")], "--deadline-s must be a number of seconds "
                                                                            "above 0, got nan"),
            (["run", "--deadline-s", "-5", "--out", str(tmp_path / "o")], "above 0, got -5.0")]:
        with pytest.raises(SystemExit):
            cli.main(argv + ["--profile", "smoke"])
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]       # nothing trained, nothing written
