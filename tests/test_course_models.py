"""The analysis notebooks open the course's trained models (issue 31), as a Colab student meets them: each notebook
alone in an empty folder, course_lib installed without ``checkpoints_of_record/`` (a copy of the package), the
checkpoints served from 127.0.0.1, every other address refused inside the kernel (the data falls back to the
committed samples, standing in for the mirror). Nothing is trained; a corrupted file stops the notebook with one
paragraph; the plan each notebook prints lists exactly what it then fetches and trains."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
import torch.nn as nn

from course_lib.experiments import course_models, of_record
from course_lib.experiments.runs import RunSpec
from course_lib.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]

# Inside the kernel: every connection but to this machine is refused at once, as the conftest guard does here.
GUARD = '''
import socket
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo
def _local(host):
    return host in (None, "", "localhost", "::1") or (isinstance(host, str) and host.startswith(("127.", "/")))
def connect(self, address, *args, **kwargs):
    if not _local(address[0] if isinstance(address, tuple) else address):
        raise OSError(f"no network in this test: {address!r}")
    return _connect(self, address, *args, **kwargs)
def getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        raise OSError(f"no network in this test: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
'''


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """course_lib as pip installs it (no checkpoints_of_record/ beside it), with the kernel's network guard."""
    site = tmp_path_factory.mktemp("site-packages")
    shutil.copytree(ROOT / "course_lib", site / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "sitecustomize.py").write_text(GUARD)
    return site


def serve(folder: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def run_alone(name: str, installed: Path, tmp_path: Path, url: str, profile: str = "gpu",
              parameters: dict | None = None) -> tuple[int, str]:
    """Execute notebook ``name`` alone in an empty folder; (return code, every output as text)."""
    folder = tmp_path / "content"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", folder / "notebook.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_")}
    env.update(PYTHONPATH=str(installed), COURSE_PROFILE=profile, COURSE_OFFLINE="0", COURSE_CHECKPOINTS_URL=url,
               COURSE_PLAIN_PROGRESS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg", no_proxy="127.0.0.1,localhost",
               NO_PROXY="127.0.0.1,localhost")
    command = [sys.executable, "-m", "papermill", "notebook.ipynb", "out.ipynb", "-k", "python3",
               "--no-progress-bar", "--cwd", str(folder)]
    for key, value in (parameters or {}).items():
        command += ["-y", json.dumps({key: value})]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    nb = nbformat.read(folder / "out.ipynb", as_version=4)
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/markdown", "")
                         + output.get("evalue", ""))
    return done.returncode, "\n".join(texts)


def planned(out: str, action: str) -> list[str]:
    return re.findall(rf"^- {action} (\S+?):? ", out, re.M)


def trained(out: str) -> list[str]:
    return re.findall(r"^\[(\S+)\] training ", out, re.M)


def nothing_left_behind(folder: Path) -> None:
    assert not (folder / "checkpoints").exists() and not (folder / "records").exists(), "something was trained"
    locks = [p for p in folder.rglob("*.lock") if "course_cache" not in p.parts]    # the data cache's own locks
    assert not locks, locks
    cache = folder / "checkpoints_of_record"
    assert not cache.exists() or sorted(p.name for p in cache.iterdir()) == sorted(
        {"manifest.json"} | {n for e in json.loads((folder / "checkpoints_of_record" / "manifest.json").read_text())
                             .values() for n in e["parts"]}), "the fetch cache holds more than its files"


# What each notebook opens, as roles: (model, with DRLoc, on few images per class). Which runs fill them follows
# from the manifest (a later study replaces an earlier one once complete), so the test checks the rule, not keys.
ROLES = {"02_attention_rollout": [("vit", False, False)],
         "03_feature_maps": [("vit", False, False), ("resnet18", False, False)],
         "04_cka": [("vit", False, False), ("resnet18", False, False), ("vit", False, True)],
         "05_drloc": [("vit", False, False), ("vit", True, False), ("resnet18", False, False)]}


def _record(key: str) -> dict:
    from course_lib.experiments.records import RECORDS_OF_RECORD, read_record

    return read_record(RECORDS_OF_RECORD / f"{key}.json")


def check_stand_ins(keys: set[str], roles: list[tuple[str, bool, bool]], pair: bool = False) -> None:
    """``keys`` fill ``roles`` with seed-0 runs that their study's plan names (at the budget it chose), and the
    ViTs shown with each other (with the ResNet-18, or the DRLoc pair's two sides) come from one study."""
    from course_lib.experiments import comparison_specs, drloc_specs
    from course_lib.profiles import get_profile

    specs = {key: _record(key)["spec"] for key in keys}
    assert sorted((s["model"], bool(s["drloc"]), s["train_per_class"] is not None) for s in specs.values()) == \
        sorted(roles), keys
    for key, s in specs.items():
        study = get_profile(s["profile"])
        planned = (drloc_specs if pair else comparison_specs)(study, "cifar10", s["train_per_class"])
        assert s["seed"] == 0 and key in {p.key for p in planned.values()}, key
    if pair:
        sides = [s for s in specs.values() if s["model"] == "vit"]
        assert len({(s["profile"], s.get("epochs"), s.get("lr")) for s in sides}) == 1, sides      # same study and budget
    else:
        assert len({s["profile"] for s in specs.values()}) == 1, keys


# 04 and 05 compute CKA on the profile's 1,000 evaluation images (870 samples here): minutes on a 2-core CPU.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in {"04_cka", "05_drloc"} else n
                                  for n in sorted(ROLES)])
def test_each_analysis_notebook_alone_on_gpu_opens_the_course_models_and_trains_nothing(name, installed, tmp_path):
    server, url = serve(ROOT / "checkpoints_of_record")
    try:
        code, out = run_alone(name, installed, tmp_path, url)
    finally:
        server.shutdown()
    assert code == 0, out[-3000:]
    manifest = json.loads((ROOT / "checkpoints_of_record" / "manifest.json").read_text())
    fetched = set(planned(out, "fetch"))
    assert len(fetched) == len(ROLES[name]) and planned(out, "train") == [], out[:3000]
    if name == "05_drloc":        # the DRLoc pair from one study at one budget; the CKA's ResNet-18 on its own
        vits = {key for key in fetched if _record(key)["spec"]["model"] == "vit"}
        check_stand_ins(vits, ROLES[name][:2], pair=True)
        check_stand_ins(fetched - vits, ROLES[name][2:])
    else:
        check_stand_ins(fetched, ROLES[name])
    assert "Nothing to train." in out and "No GPU is attached" in out             # the plan, on this CPU
    opened = re.findall(r"^Opened the course's \S+ (\S+) \(checkpoint SHA-256 (\w+)\.\.\.", out, re.M)
    assert {key for key, _ in opened} == fetched
    assert all(manifest[key]["sha256"].startswith(sha) for key, sha in opened)
    assert trained(out) == [] and "Training" not in out
    assert (tmp_path / "content" / "checkpoints_of_record" / "manifest.json").is_file()      # kept for the next
    nothing_left_behind(tmp_path / "content")


def test_a_corrupted_checkpoint_stops_the_notebook_with_the_paragraph_and_trains_nothing(installed, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(ROOT / "checkpoints_of_record", served)
    key = course_models.course_model("vit").key                         # the ViT notebook 02 opens
    part = served / json.loads((served / "manifest.json").read_text())[key]["parts"][0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    server, url = serve(served)
    try:
        code, out = run_alone("02_attention_rollout", installed, tmp_path, url)
    finally:
        server.shutdown()
    assert code != 0
    paragraph = next(line for line in out.splitlines() if "could not be fetched" in line)
    assert f"{key} could not be fetched (checksum)" in paragraph
    assert "Nothing was trained. Two ways on: (1)" in paragraph and "(2) set use_course_models = False" in paragraph
    assert re.search(r"cifar10-vit-course-gpu-s0: about \d+ (s|min) on this device", paragraph), paragraph
    assert trained(out) == []
    nothing_left_behind(tmp_path / "content")


# Each notebook alone, training its own under `smoke` (name: its parameters, the runs it trains), on CIFAR-10 only:
# the other data sets' runs take the same path and each costs the shared CPU more time. 05 with its ablation, whose
# runs the notebook opens in another cell than its comparisons. One run takes 02 about 30 s on a 2-core machine,
# 03-04 about a minute, 05's eleven runs a few minutes: those are `slow`.
OWN_RUNS = {"02_attention_rollout": ({}, 1), "03_feature_maps": ({}, 2), "04_cka": ({"datasets": ["cifar10"]}, 3),
            "05_drloc": ({"datasets": ["cifar10"], "ablation": True}, 11)}


def trains_what_it_plans(name: str, installed: Path, tmp_path: Path, parameters: dict) -> list[str]:
    """Run ``name`` alone under `smoke`, training its own; assert that the runs it trains are exactly those its plan
    listed (each once, nothing else fetched or loaded in an empty folder); return them."""
    server, url = serve(ROOT / "checkpoints_of_record")
    try:
        code, out = run_alone(name, installed, tmp_path, url, profile="smoke",
                              parameters={"use_course_models": False, **parameters})
    finally:
        server.shutdown()
    assert code == 0, out[-3000:]
    plan, runs = planned(out, "train"), trained(out)
    assert len(set(runs)) == len(runs), f"a run was trained twice: {runs}"
    assert sorted(plan) == sorted(runs), (f"planned, not trained: {sorted(set(plan) - set(runs))}; trained, not "
                                          f"planned: {sorted(set(runs) - set(plan))}\n{out[:3000]}")
    assert planned(out, "fetch") == planned(out, "load") == [], out[:3000]
    return runs


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if OWN_RUNS[n][1] > 1 else n
                                  for n in sorted(OWN_RUNS)])
def test_a_notebook_training_its_own_trains_exactly_what_its_plan_lists(name, installed, tmp_path):
    parameters, count = OWN_RUNS[name]
    runs = trains_what_it_plans(name, installed, tmp_path, parameters)
    assert len(runs) == count and "cifar10-vit-course-smoke-s0" in runs, runs


# --------------------------------------------------------------------------------------------------------------
# Which model stands for a request, and the plan of a notebook run alone

def _fake_models(specs: list[RunSpec], date: str = "2026-01-01") -> list:
    """Manifest models standing for ``specs`` (records reduced to what the choice reads)."""
    return [course_models.CourseModel(s.key, {"identity_hash": s.key}, {"spec": s.to_dict(),
                                                                      "environment": {"date": date}})
            for s in specs]


def test_the_course_model_is_the_run_its_study_plans_and_a_later_study_stands_in_once_complete(monkeypatch):
    from course_lib.experiments import comparison_specs, drloc_specs

    study, study2, gpu = PROFILES["study"], PROFILES["study2"], PROFILES["gpu"]
    first = [*comparison_specs(study, "cifar10").values(), *drloc_specs(study, "cifar10").values(),
             comparison_specs(study, "cifar10", 100)["ViT"]]
    second = {**comparison_specs(study2, "cifar10"), "few": comparison_specs(study2, "cifar10", 100)["ViT"],
              **{f"pair {k}": v for k, v in drloc_specs(study2, "cifar10").items()}}
    assert second["pair ViT"].epochs != second["ViT"].epochs    # the DRLoc pair trains longer than the curve's ViT
    longer = RunSpec("vit", "cifar10", study2, train_per_class=100, epochs=2 * second["few"].epochs,
                     lr=second["few"].lr)                       # a doubling check: never the course's model
    every = _fake_models(first, "2026-01-01")

    def choose(*extra, date="2026-06-01"):
        monkeypatch.setattr(course_models, "_course_models", lambda: every + _fake_models(list(extra), date))
        pair = course_models.course_models_for(list(drloc_specs(gpu, "cifar10").values()))
        return (course_models.course_model("vit").key, course_models.course_model("resnet18").key,
                course_models.course_model("vit", few_images=True).key, [c.key for c in pair])

    vit, resnet, few = (s.key for s in first[:2] + first[-1:])
    drloc_pair = [first[2].key, first[3].key]
    assert choose() == (vit, resnet, few, drloc_pair)
    # The second study's ViTs without its ResNet-18: the first study, complete, still stands in.
    assert choose(second["ViT"], second["few"], second["pair ViT"]) == (vit, resnet, few, drloc_pair)
    # Complete: its curve's runs stand in, never its longer ones; the DRLoc pair stays the first study's, both
    # sides, until the second study has both (its plain ViT alone is not a pair).
    got = choose(second["ViT"], second["ResNet-18"], second["few"], longer, second["pair ViT"])
    assert got == (second["ViT"].key, second["ResNet-18"].key, second["few"].key, drloc_pair)
    got = choose(second["ViT"], second["ResNet-18"], second["pair ViT"], second["pair ViT+DRLoc"])
    assert got[:2] == (second["ViT"].key, second["ResNet-18"].key) and got[2] == few      # few: only the first's
    assert got[3] == [second["pair ViT"].key, second["pair ViT+DRLoc"].key]
    # On few images, one size per group: the fewest at which the study keeps both sides of the pair.
    small_pair = [s for n in (100, 250) for s in drloc_specs(study2, "cifar10", n).values()][1:]   # no ViT at 100
    got = course_models.course_models_for(list(drloc_specs(gpu, "cifar10", 10).values()))
    assert got == [None, None]
    monkeypatch.setattr(course_models, "_course_models", lambda: every + _fake_models(small_pair))
    got = course_models.course_models_for(list(drloc_specs(gpu, "cifar10", 10).values()))
    assert [c.key for c in got] == [s.key for s in small_pair[-2:]]
    # Not complete but newer loses to complete; between two complete studies, the newer record wins.
    assert choose(second["ViT"], date="2099-01-01")[0] == vit
    assert choose(second["ViT"], second["ResNet-18"], date="2000-01-01")[0] == vit


def test_a_run_of_record_stands_for_itself_and_requests_the_course_lacks_get_none():
    from course_lib.experiments import contrast_specs

    study2 = PROFILES["study2"]
    for seed in (0, 1, 2):                  # notebook 04's contrast opens each seed as itself, never another
        small = contrast_specs(study2, seed)["ViT on 100/class"]
        assert course_models.course_model_for(small).key == small.key
    assert course_models.course_model_for(RunSpec("vit", "cifar10", PROFILES["study"], train_per_class=100,
                                                  seed=1)) is None      # a study's run not of record: none
    assert course_models.course_model_for(RunSpec("vit", "cifar10", PROFILES["smoke"], seed=1)) is None
    assert course_models.course_model("vit", "cifar100") is None and course_models.course_model("vit_paper") is None
    spec = RunSpec("vit", "cifar10", PROFILES["gpu"], drloc=True, drloc_pairs=16)
    assert course_models.course_model_for(spec) is None                     # not the default DRLoc
    stand_in = course_models.course_model_for(RunSpec("vit", "cifar10", PROFILES["smoke"], train_per_class=10))
    assert stand_in.record["spec"]["train_per_class"] == 100 and stand_in.record["spec"]["seed"] == 0


def test_notebook_05_alone_plans_the_runs_it_shares_with_chapter_1():
    from course_lib.experiments import budget

    steps = budget.planned_runs("05_drloc", PROFILES["smoke"], use_course_models=False)
    keys = [s.key for s, _ in steps["train"]]
    assert "cifar10-vit-course-smoke-s0" in keys and "cifar10-resnet18-course-smoke-s0" in keys
    assert len(keys) == len(set(keys))


# --------------------------------------------------------------------------------------------------------------
# Issue 32's items in of_record: locks, damaged manifests, a load racing a re-export

def _export(folder: Path, key: str = "k", identity: str = "id") -> dict:
    of_record.export_fp16(nn.Linear(3, 2), {"key": key, "identity_hash": identity}, folder)
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("entry_change, words", [({"bytes": 10**12}, "not a number of bytes"),
                                                  ({"parts": ["a\x00b"]}, "not a list of file names"),
                                                  ({"parts": ["../x"]}, "not a list of file names"),
                                                  ({"sha256": "nope"}, "is not a hash")])
def test_a_damaged_manifest_entry_is_a_clear_error_not_a_raw_one(tmp_path, entry_change, words):
    manifest = _export(tmp_path)
    manifest["k"].update(entry_change)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(of_record.CorruptFileError, match=words):
        of_record.load_fp16(nn.Linear(3, 2), "k", "id", tmp_path)


def test_exports_and_loads_leave_no_lock_file_anywhere(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    _export(tmp_path / "out")
    assert of_record.load_fp16(nn.Linear(3, 2), "k", "id", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["k.fp16.pt", "manifest.json"]
    assert list((tmp_path / "tmp").iterdir()) == []        # no lock folder another user could plant or redirect


def _reexport(folder: Path, stop: threading.Event, errors: list) -> None:
    try:
        i = 0
        while not stop.is_set():
            i += 1
            model = nn.Linear(64, 64)
            nn.init.constant_(model.weight, float(i))
            of_record.export_fp16(model, {"key": "k", "identity_hash": "id"}, folder)
    except Exception as error:          # noqa: BLE001 - reported by the test
        errors.append(error)


def test_a_load_racing_a_re_export_of_the_same_key_never_sees_half_of_each(tmp_path):
    of_record.export_fp16(nn.Linear(64, 64), {"key": "k", "identity_hash": "id"}, tmp_path)
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_reexport, args=(tmp_path, stop, errors))
    writer.start()
    try:
        for _ in range(150):
            assert of_record.load_fp16(nn.Linear(64, 64), "k", "id", tmp_path)
    finally:
        stop.set()
        writer.join()
    assert not errors


# --------------------------------------------------------------------------------------------------------------
# The study's CIFAR-10 JPEG archive is checked by its SHA-256 before it is read

def test_the_study_jpeg_archive_is_refused_when_its_sha256_differs(tmp_path):
    from course_lib.data import load_dataset, mirrors

    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    (folder / mirrors.JPEG_ARCHIVE["name"]).write_bytes(b"not the study's archive")
    with pytest.raises(mirrors.CopyRefusedError, match="is not the study's CIFAR-10 JPEG archive: its SHA-256"):
        load_dataset("cifar10", "test", root=tmp_path, source="jpeg")
    real = ROOT / "data" / "cifar10-jpeg" / mirrors.JPEG_ARCHIVE["name"]
    if real.is_file():                     # the study's own copy (in the course's working copy) passes
        assert real.stat().st_size == mirrors.JPEG_ARCHIVE["bytes"]
        mirrors.verify_jpeg_archive(real)


def test_a_damaged_export_outside_the_repository_is_never_told_to_restore_from_git(tmp_path):
    _export(tmp_path)
    part = tmp_path / "k.fp16.pt"
    part.write_bytes(b"x" * part.stat().st_size)
    with pytest.raises(of_record.CorruptFileError, match="SHA-256") as caught:
        of_record.load_fp16(nn.Linear(3, 2), "k", "id", tmp_path)
    assert "git" not in str(caught.value) and "Export k again" in str(caught.value)
