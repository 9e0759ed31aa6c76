"""Records and run identities: every record and checkpoint of record keeps its hash; format 1 is read, format 2
written without copies; impossible numbers and an edited identity are refused."""
import hashlib
import json
import re
from dataclasses import asdict

import pytest
import torch

from course_lib.checkpoints import data_fingerprint, fit_identity, identity_hash, load_resumable, settings_text
from course_lib.data import DATASETS, Preprocessing
from course_lib.experiments import records, runs
from course_lib.experiments.records import Record, record_problems
from course_lib.experiments.runs import RunSpec
from course_lib.profiles import PROFILES
from course_lib.recipes import TrainConfig

COMMITTED = records.record_files(records.RECORDS_OF_RECORD)
MANIFEST = records.RECORDS_OF_RECORD.parents[1] / "checkpoints_of_record" / "manifest.json"


def _legacy_hash(identity: dict) -> str:
    """How every identity of record was hashed (runs._hash before the hash moved to checkpoints.py), on the form
    format 1 stored it in: an extra loss's settings as the text ``name=value!r, ...`` (records written since
    ``ExtraLoss.identity()`` returns data store them as a dict)."""
    def text(settings):
        return settings if isinstance(settings, str) else ", ".join(f"{k}={v!r}" for k, v in settings.items())
    if isinstance(identity.get("extra_losses"), list):
        identity = {**identity, "extra_losses": [{**t, "settings": text(t["settings"])}
                                                 for t in identity["extra_losses"]]}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


class _Data:
    """What an identity reads of an ImageSet: its copy, its size and its fingerprint."""

    def __init__(self, source: str, images: int, fingerprint: str):
        self.source, self.images, self._fingerprint = source, images, fingerprint

    def __len__(self) -> int:
        return self.images

    def fingerprint(self) -> str:
        return self._fingerprint


def _stub(part: dict) -> _Data:
    return _Data(part["source"], part["images"], part["fingerprint"])


def _legacy_run_identity(spec, model, extra_losses, cfg, train, test, val=None) -> dict:
    """runs.run_identity as it was when the records of record were made (commit 0c1e60e), the reference."""
    def data(d):
        return {"source": d.source, "images": len(d), "fingerprint": data_fingerprint(d)}

    identity = {"spec": spec.to_dict(), "model": {"class": type(model).__name__, **asdict(model.config)},
                "recipe": asdict(cfg), "extra_losses": [{"class": type(t).__name__, "settings": t.extra_repr()}
                                                         for t in extra_losses],
                "train_data": data(train), "test_data": data(test),
                "preprocess": Preprocessing.for_dataset(spec.dataset, cfg.normalize).to_dict()}
    if val is not None:
        identity["val_data"] = data(val)
    return identity


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_every_record_of_record_hashes_to_its_stored_identity_hash(path):
    raw = json.loads(path.read_text())
    assert identity_hash(raw["identity"]) == _legacy_hash(raw["identity"]) == raw["identity_hash"]
    record = Record.from_dict(raw)                         # format 1 read as data ...
    assert identity_hash(record.identity) == raw["identity_hash"]      # ... hashes the same


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_the_layered_builder_reproduces_the_stored_hash(path):
    """The runner builds the record's model, recipe and extra loss from its spec afresh; with the stored data's
    copy, size and fingerprint, its identity hashes to the stored identity_hash."""
    raw = json.loads(path.read_text())
    stored = raw["identity"]
    spec = RunSpec.from_dict(stored["spec"])
    cfg = TrainConfig(**{**stored["recipe"], "betas": tuple(stored["recipe"]["betas"])})
    assert runs.training_config(spec, stored["train_data"]["images"]) == cfg    # the spec still gives the recipe
    model, extra_losses = runs._build(spec, cfg)
    val = _stub(stored["val_data"]) if "val_data" in stored else None
    identity = runs.run_identity(spec, model, extra_losses, cfg, _stub(stored["train_data"]),
                                 _stub(stored["test_data"]), val)
    assert identity_hash(identity) == raw["identity_hash"]


@pytest.mark.parametrize("lr", [None, 3e-4])
@pytest.mark.parametrize("with_val", [False, True])
@pytest.mark.parametrize("drloc", [False, True])
def test_the_layered_builder_hashes_as_before_with_and_without_validation_and_lr(lr, with_val, drloc):
    spec = RunSpec("vit", "cifar10", PROFILES["study2"], drloc=drloc, drloc_schedule="official",
                   train_per_class=100, lr=lr)
    cfg = runs.training_config(spec, 1000)
    model, extra_losses = runs._build(spec, cfg)
    train, test = _Data("train copy", 1000, "1000:aa"), _Data("test copy", 10000, "10000:bb")
    val = _Data("val copy", 1000, "1000:cc") if with_val else None
    new = runs.run_identity(spec, model, extra_losses, cfg, train, test, val)
    old = _legacy_run_identity(spec, model, extra_losses, cfg, train, test, val)
    assert identity_hash(new) == _legacy_hash(old)
    assert ("val_data" in new) is with_val and ("lr" in new["spec"]) is (lr is not None)
    if drloc:
        assert new["extra_losses"][0]["settings"]["schedule"] == "official"        # data, not text


def test_checkpoints_of_record_name_records_of_record():
    manifest = json.loads(MANIFEST.read_text())
    for key, entry in manifest.items():
        path = records.RECORDS_OF_RECORD / f"{key}.json"
        assert path.exists(), key
        assert json.loads(path.read_text())["identity_hash"] == entry["identity_hash"], key


def test_settings_text_round_trips_through_json():
    settings = {"dim": 192, "weight": 1.0, "m": 64, "loss": "l1", "target": "paper"}
    assert settings_text(json.loads(json.dumps(settings))) == "dim=192, weight=1.0, m=64, loss='l1', target='paper'"


def test_a_checkpoint_with_the_old_text_settings_still_resumes(tmp_path, cifar10_samples):
    """Checkpoints made before ExtraLoss.identity() returned data hold the settings as text: same run."""
    from course_lib.data import subset
    from course_lib.drloc import DRLocLoss
    from course_lib.models import ViT

    train = subset(cifar10_samples[0], 2)
    model = ViT(dim=16, depth=1, heads=2)
    term = DRLocLoss(dim=16)
    cfg = TrainConfig(epochs=1, batch_size=10)
    identity = fit_identity(model, train, None, cfg, [term])
    old = {**identity, "extra_losses": [{"class": "DRLocLoss", "settings": term.extra_repr()}]}
    path = tmp_path / "old.pt"
    torch.save({"signature": identity["model"], "identity": old}, path)
    assert load_resumable(path, model, identity, torch.device("cpu"))["identity"] == old


# --------------------------------------------------------------------------------------------------------------
# Format 2, and what no run can have produced

def _committed(name: str = "cifar10-vit-drloc_l0.5_m64-n25-course-cpu-s0.json") -> dict:
    return json.loads((records.RECORDS_OF_RECORD / name).read_text())


def test_format_1_is_read_and_format_2_written_without_copies(tmp_path):
    raw = _committed()
    record = Record.from_dict(raw)
    written = records.write_record(record, folder=tmp_path)
    new = json.loads(written.read_text())
    assert new["format"] == 2 and not {"spec", "recipe", "preprocess", "test_fingerprint", "test_correct"} & set(new)
    assert record_problems(new, written) == []
    again = Record.from_dict(new)
    assert again == record and again.identity_hash == raw["identity_hash"]
    for name in ("spec", "recipe", "preprocess", "test_fingerprint", "test_correct", "final_test_acc"):
        assert again[name] == raw[name]
    assert again.identity["extra_losses"][0]["settings"]["m"] == 64


def _format_2() -> dict:
    return Record.from_dict(_committed()).to_dict()


IMPOSSIBLE = {
    "steps -1": (lambda r: {**r, "steps": -1}, r"steps -1 is outside"),
    "num_classes 0": (lambda r: {**r, "num_classes": 0}, r"num_classes 0 is outside"),
    "negative time": (lambda r: {**r, "train_seconds": -3.0}, r"train_seconds -3.0 is outside"),
    "negative speed": (lambda r: {**r, "images_per_second": -1.0}, r"images_per_second -1.0 is outside"),
    "epochs against history": (lambda r: {**r, "epochs": r["epochs"] + 1}, r"disagrees with the history"),
    "images per class": (lambda r: {**r, "images_per_class": 7}, r"images_per_class 7 is not"),
}


@pytest.mark.parametrize("probe", list(IMPOSSIBLE))
def test_numbers_no_run_can_produce_are_refused(probe):
    edit, words = IMPOSSIBLE[probe]
    problems = record_problems(edit(_format_2()))
    assert problems and any(re.search(words, p) for p in problems), problems


def test_a_record_edited_to_empty_preprocessing_is_not_reused():
    """Analysis would feed unnormalised images to a model whose identity says normalised."""
    raw = _committed()
    assert any("preprocess disagrees" in p for p in record_problems({**raw, "preprocess": {}}))       # format 1
    r2 = _format_2()
    edited = {**r2, "identity": {**r2["identity"], "preprocess": {}}}
    assert any("was edited" in p for p in record_problems(edited))
    rehashed = {**edited, "identity_hash": identity_hash(edited["identity"])}    # consistent, still meaningless
    assert any("does not say whether" in p for p in record_problems(rehashed))
    raw_pixels = {**r2["identity"], "preprocess": {"normalize": False, "mean": None, "std": None}}
    problems = record_problems({**r2, "identity": raw_pixels, "identity_hash": identity_hash(raw_pixels)})
    assert any("disagrees with the recipe's normalize=True" in p for p in problems)


def test_a_bad_record_is_set_aside_when_read(tmp_path):
    path = tmp_path / f"{_committed()['key']}.json"
    path.write_text(json.dumps({**_format_2(), "steps": -1}))
    with pytest.warns(records.RecordWarning, match="steps -1 is outside"):
        assert records.read_record(path) is None


def test_num_classes_of_the_records_agree_with_the_data_sets():
    for path in COMMITTED:
        record = Record.from_dict(json.loads(path.read_text()))
        assert record.num_classes == DATASETS[record.spec["dataset"]].num_classes, path.name
