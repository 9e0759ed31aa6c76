"""Reliability, third round: runs reused by name, checkpoints of record lost or mixed up, records trusted field by
field, and a checkpoint of another run that stopped everything. Each test reproduces a probe of the issue and fails
without its fix."""
import json
import tarfile
import threading
import warnings
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from course_lib.data import sources
from course_lib.checkpoints import identity_hash
from course_lib.experiments import RunSpec, of_record, queue, records, runs
from course_lib.files import CorruptFileError
from course_lib.profiles import PROFILES

TINY = replace(PROFILES["smoke"], test_images=40)
COMMITTED = sorted(records.RECORDS_OF_RECORD.glob("*.json"))


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A work folder of its own: no records of record, no checkpoints of record, a fixed speed for the queue."""
    monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path))
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "records_of_record")
    monkeypatch.setattr(of_record, "OF_RECORD_DIR", tmp_path / "checkpoints_of_record")
    monkeypatch.setattr(queue, "measure_throughput", lambda *args: 100.0)
    return tmp_path


def tiny(seed: int = 0) -> RunSpec:
    return RunSpec("vit", "cifar10", TINY, train_per_class=2, epochs=1, seed=seed)


def other_copy(monkeypatch) -> None:
    """Another copy of the data appears: other pixels under the same spec (so another identity)."""
    real = sources.load_samples

    def load(name, split):
        data = real(name, split)
        return replace(data, images=255 - data.images, source="another copy of " + data.source)

    monkeypatch.setattr(sources, "load_samples", load)


# --------------------------------------------------------------------------------------------------------------
# 1. A run reused by name

def test_the_queue_counts_a_run_done_only_with_its_identity(here, monkeypatch):
    spec = tiny()
    first = queue.run_queue([spec], 1000, here / "out", root=here)
    assert first.outcome[spec.key].startswith("trained")
    old = json.loads((here / "records" / f"{spec.key}.json").read_text())["identity_hash"]
    other_copy(monkeypatch)
    again = queue.run_queue([spec], 1000, here / "out", root=here)
    assert again.outcome[spec.key].startswith("trained"), again.outcome
    assert json.loads((here / "records" / f"{spec.key}.json").read_text())["identity_hash"] != old


def test_a_record_of_record_with_another_identity_is_not_done(here):
    spec = tiny()
    made = runs.train_run(spec, root=here / "elsewhere", progress=False).record
    records.RECORDS_OF_RECORD.mkdir()
    other = {**made.identity, "train_data": {**made.identity["train_data"], "fingerprint": "another copy"}}
    (records.RECORDS_OF_RECORD / f"{spec.key}.json").write_text(
        json.dumps({**made.to_dict(), "identity": other, "identity_hash": identity_hash(other)}))
    report = queue.run_queue([spec], 1000, here / "out", root=here)
    assert report.outcome[spec.key].startswith("trained"), report.outcome
    (records.RECORDS_OF_RECORD / f"{spec.key}.json").write_text(json.dumps(made.to_dict()))   # this very run: done
    assert queue.run_queue([spec], 1000, here / "out2", root=here / "b").outcome[spec.key] == "done before"


# --------------------------------------------------------------------------------------------------------------
# 2. Checkpoints of record lost or mixed up

class Killed(BaseException):
    """The process is killed here."""


def test_a_run_of_record_killed_before_its_export_is_exported_on_the_rerun(here, monkeypatch, capsys):
    spec, out = tiny(), here / "out"

    def killed(*args):
        raise Killed

    monkeypatch.setattr(queue, "export_fp16", killed)
    with pytest.raises(Killed):
        queue.run_queue([spec], 1000, out, of_record={spec}, root=here)
    assert (here / "records" / f"{spec.key}.json").exists() and not (out / "manifest.json").exists()
    monkeypatch.setattr(queue, "export_fp16", of_record.export_fp16)
    capsys.readouterr()
    report = queue.run_queue([spec], 1000, out, of_record={spec}, root=here)
    assert report.outcome[spec.key].startswith("exported"), report.outcome
    assert "training" not in capsys.readouterr().out                  # the finished checkpoint, not trained again
    record = json.loads((here / "records" / f"{spec.key}.json").read_text())
    assert of_record.manifest_entry(spec.key, record["identity_hash"], out) is not None
    assert queue.run_queue([spec], 1000, out, of_record={spec}, root=here).outcome[spec.key] == "done before"


def _export_many(folder, names, barrier, errors):
    model = nn.Linear(2, 2)
    barrier.wait()
    try:
        for name in names:
            of_record.export_fp16(model, {"key": name, "identity_hash": f"h-{name}"}, folder)
    except Exception as error:        # noqa: BLE001 - reported by the test
        errors.append(error)


def test_concurrent_exports_into_one_folder_keep_every_manifest_entry(tmp_path):
    names = [[f"t{t}-run{i}" for i in range(25)] for t in range(3)]
    barrier, errors = threading.Barrier(len(names)), []
    threads = [threading.Thread(target=_export_many, args=(tmp_path, n, barrier, errors)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest) == sorted(n for group in names for n in group)
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob(".*"))    # the folder holds its files only


def test_out_inside_records_keeps_the_manifest_and_every_record(here):
    spec, out = tiny(), here / "records"
    queue.run_queue([spec], 1000, out, of_record={spec}, root=here)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = records.load_records(here, folders=[out])
    assert [r["key"] for r in loaded] == [spec.key]
    assert "identity_hash" in json.loads((out / "manifest.json").read_text())[spec.key]
    with tarfile.open(out / "records.tar.gz") as tar:
        assert tar.getnames() == [f"records/{spec.key}.json"]                # the archive holds records only


def _two_exports(folder):
    for key in ("a", "b"):
        torch.manual_seed(len(key) + ord(key))
        of_record.export_fp16(nn.Linear(3, 2), {"key": key, "identity_hash": f"hash-{key}"}, folder)
    return json.loads((folder / "manifest.json").read_text())


def test_an_entry_pointing_at_another_runs_file_is_refused(tmp_path):
    manifest = _two_exports(tmp_path)
    manifest["a"] = {**manifest["b"], "identity_hash": "hash-a"}       # a hand-merged manifest: a's entry, b's file
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"b\.fp16\.pt.*lists it for a \(hash-a\), but it holds b \(hash-b\)"
                                               r".*Export a again"):
        of_record.load_fp16(nn.Linear(3, 2), "a", "hash-a", tmp_path)
    assert of_record.load_fp16(nn.Linear(3, 2), "b", "hash-b", tmp_path)          # the right one still loads


def test_an_entry_without_identity_hash_is_a_clear_error(tmp_path):
    manifest = _two_exports(tmp_path)
    del manifest["a"]["identity_hash"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"manifest\.json is damaged.*entry has no identity_hash \(key a\)"
                                               r".*Export a again"):
        of_record.load_fp16(nn.Linear(3, 2), "a", "hash-a", tmp_path)
    assert of_record.manifest_entry("a", "hash-a", tmp_path) is None              # not done: exported again


# --------------------------------------------------------------------------------------------------------------
# 3. Records trusted field by field

def committed(tmp_path, name: str = "cifar10-vit-n25-course-cpu-s0.json"):
    """A committed record, as a dict, and where a copy of it goes in a records folder."""
    path = tmp_path / "records" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return json.loads((records.RECORDS_OF_RECORD / name).read_text()), path


def _drop(field):
    return lambda r: {k: v for k, v in r.items() if k != field}


PROBES = {
    "accuracy edited": (lambda r: {**r, "final_test_acc": 99.0}, r"final_test_acc 99.0 disagrees with its per-image"),
    "newer format": (lambda r: {**r, "format": 3}, r"newer course_lib \(record format 3.*Upgrade course_lib"),
    "label missing": (_drop("label"), r"label is missing"),
    "steps missing": (_drop("steps"), r"steps is missing"),
    "accuracy a string": (lambda r: {**r, "final_test_acc": "28.39"}, r"final_test_acc is '28.39', not a number"),
    "spec a list": (lambda r: {**r, "spec": list(r["spec"].values())}, r"spec is \['vit'.*, not an object"),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_a_bad_record_is_named_and_set_aside(tmp_path, probe):
    edit, words = PROBES[probe]
    record, path = committed(tmp_path)
    path.write_text(json.dumps(edit(record)))
    with pytest.warns(records.RecordWarning, match=f"{path.name}.*{words}.*moved to"):
        assert records.read_record(path) is None
    assert not path.exists() and len(list(path.parent.glob("*.corrupt-*"))) == 1


def test_one_bad_record_does_not_drop_the_others(tmp_path):
    record, path = committed(tmp_path)
    path.write_text(json.dumps({**record, "spec": list(record["spec"].values())}))
    good, good_path = committed(tmp_path, "cifar10-vit-n50-course-cpu-s0.json")
    good_path.write_text(json.dumps(good))
    with pytest.warns(records.RecordWarning, match="spec is"):
        loaded = records.load_records(tmp_path, profile="cpu", folders=[tmp_path / "records"])
    assert [r["key"] for r in loaded] == [good["key"]]


def test_a_bad_record_of_record_is_skipped_never_moved(tmp_path, monkeypatch):
    record, _ = committed(tmp_path)
    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "of_record")
    records.RECORDS_OF_RECORD.mkdir()
    path = records.RECORDS_OF_RECORD / f"{record['key']}.json"
    path.write_text(json.dumps({**record, "final_test_acc": 99.0}))
    with pytest.warns(records.RecordWarning, match=r"disagrees.*record of record.*stays.*git checkout"):
        assert records.find_record(record["key"], tmp_path) is None
    assert path.exists() and not list(records.RECORDS_OF_RECORD.glob("*.corrupt-*"))


def test_an_edited_record_is_set_aside_and_made_again_and_new_records_carry_their_format(here, capsys):
    spec = tiny()
    first = runs.train_run(spec, root=here, progress=False).record
    path = here / "records" / f"{spec.key}.json"
    path.write_text(json.dumps({**first.to_dict(), "final_test_acc": 99.0}))
    with pytest.warns(records.RecordWarning, match="disagrees with its per-image results"):
        again = runs.train_run(spec, root=here, progress=False).record
    assert again["final_test_acc"] == first["final_test_acc"] != 99.0
    assert records.record_problems(json.loads(path.read_text()), path) == []
    assert again["format"] == json.loads(path.read_text())["format"] == records.RECORD_FORMAT == 2


def test_every_committed_record_passes_validation():
    assert len(COMMITTED) >= 24
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = records.load_records(folders=[records.RECORDS_OF_RECORD])
    assert len(loaded) == len(records.record_files(records.RECORDS_OF_RECORD)) >= 24
    for path in records.record_files(records.RECORDS_OF_RECORD):
        assert records.record_problems(json.loads(path.read_text()), path) == [], path.name


# --------------------------------------------------------------------------------------------------------------
# 4. Right error, wrong advice

def test_a_checkpoint_of_another_run_is_moved_aside_and_the_run_trained_afresh(here, capsys):
    a, b = tiny(0), tiny(1)
    trained = runs.prepare(a, root=here)
    runs.execute(trained, progress=False)
    run = runs.prepare(b, root=here)
    run.checkpoint.write_bytes(trained.checkpoint.read_bytes())         # run a's checkpoint at run b's path
    result = runs.execute(run, progress=False)
    out = capsys.readouterr().out
    assert "made by another run" in out and "Moved it to" in out and "resume=False" not in out
    assert result.record["identity_hash"] == run.identity_hash and len(result.history) == 1
    assert len(list(run.checkpoint.parent.glob(f"{run.checkpoint.name}.corrupt-*"))) == 1
