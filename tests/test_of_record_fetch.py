"""Checkpoints of record fetched from the repository at the release (issue 19): on Colab the analysis notebooks open
the course's trained models instead of training them. Every test fetches from a local HTTP server that counts the
requests; nothing leaves 127.0.0.1."""
from __future__ import annotations

import json
import re
import threading
import time
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

from course_lib import files, release
from course_lib.experiments import fetching, of_record
from course_lib.settings import SettingError
from conftest import QuietHandler, local_http_server

ROOT = Path(__file__).resolve().parents[1]
KEY, IDENTITY = "cifar10-vit-course-study-s0", "0123456789ab"


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[1].running_mean.normal_()
    model[1].num_batches_tracked += seed + 3
    return model


def fp16_state(model: nn.Module) -> dict:
    """The weights as a checkpoint of record keeps them (floating point in float16), back in the model's dtypes."""
    return {k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}


def same_weights(model: nn.Module, state: dict) -> bool:
    got = model.state_dict()
    return got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)


class Site:
    """What the repository holds at the release (``folder``), served over HTTP; ``rules`` per file name: a status
    code, ``"truncate"`` (the connection drops mid-body) or ``"stall"`` (no answer)."""

    def __init__(self, folder: Path):
        self.folder, self.requests, self.rules, self.url = folder, [], {}, ""
        self.release = threading.Event()

    def manifest(self) -> dict:
        return json.loads((self.folder / of_record.MANIFEST).read_text())

    def set_manifest(self, manifest: dict) -> None:
        (self.folder / of_record.MANIFEST).write_text(json.dumps(manifest))


def _handler(site: Site):
    class Handler(QuietHandler):
        def do_GET(self):
            site.requests.append(self.path)
            prefix = "/course-org/vit-small-data/v0.2.0/checkpoints_of_record/"
            name = self.path[len(prefix):] if self.path.startswith(prefix) else None
            rule = site.rules.get(name)
            if rule == "stall":
                site.release.wait(10)
                return
            if rule == "trickle":                           # a byte now and then: no read ever times out
                body = (site.folder / name).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    if site.release.wait(0.1):
                        return
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                return
            path = site.folder / name if name else None
            if isinstance(rule, int) or path is None or not path.is_file():
                self.send_error(rule if isinstance(rule, int) else 404)
                return
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2] if rule == "truncate" else body)

    return Handler


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A Colab-like session: no checkpoints of record on disk, downloads allowed, the repository served locally
    with the checkpoint of record of KEY (in several parts)."""
    s = Site(tmp_path / "served")
    monkeypatch.setattr(of_record, "MAX_FILE_BYTES", 1000)          # several parts, as real checkpoints have
    s.model = make_model(0)
    s.paths = of_record.export_fp16(s.model, {"key": KEY, "identity_hash": IDENTITY}, s.folder)
    assert len(s.paths) > 1
    with local_http_server(_handler(s)) as base:
        s.url = f"{base}/course-org/vit-small-data/v0.2.0/checkpoints_of_record"
        monkeypatch.setattr(of_record, "OF_RECORD_DIR", tmp_path / "site-packages" / "checkpoints_of_record")
        monkeypatch.setattr(fetching, "_REMOTE", {})
        monkeypatch.setenv("COURSE_WORKDIR", str(tmp_path / "content"))
        monkeypatch.setenv("COURSE_CHECKPOINTS_URL", s.url)
        monkeypatch.setenv("COURSE_OFFLINE", "0")
        monkeypatch.delenv("COURSE_FETCH_CHECKPOINTS", raising=False)
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield s
        s.release.set()               # a stalled answer returns before the server shuts down


def cache() -> Path:
    return of_record.fetch_cache()


def lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def refused(site, capsys, expected: str, cause: str = "network") -> of_record.CheckpointFetchError:
    """load_fp16 stops with CheckpointFetchError (nothing is trained in place of a run of record), leaves the model
    and the cache alone, and says what failed and the two ways on in one paragraph."""
    model = make_model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    capsys.readouterr()
    with pytest.raises(of_record.CheckpointFetchError) as caught:
        of_record.load_fp16(model, KEY, IDENTITY)
    error = caught.value
    assert lines(capsys) == []
    assert str(error).startswith(f"The course's trained model {KEY} could not be fetched ({cause}): ")
    assert expected in str(error) and "Nothing was trained. Two ways on: (1)" in str(error), str(error)
    assert "\n" not in str(error) and error.cause == cause
    assert same_weights(model, before)
    assert not any(cache().glob(f"{KEY}*")), "a refused download was kept"
    return error


# --------------------------------------------------------------------------------------------------------------
# A good fetch, then the cache

def test_a_good_fetch_loads_the_weights_of_record_and_says_so_in_one_line(site, capsys):
    model = make_model(1)
    assert not same_weights(model, fp16_state(site.model))
    assert of_record.load_fp16(model, KEY, IDENTITY) is True
    assert same_weights(model, fp16_state(site.model))
    assert lines(capsys) == [f"Loaded the course's trained model {KEY} (checkpoint of record, fetched from "
                             f"{site.url}/, SHA-256 checked) instead of training it (COURSE_FETCH_CHECKPOINTS=0 "
                             "trains your own)."]
    names = [p.name for p in site.paths]
    assert [r.rsplit("/", 1)[1] for r in site.requests] == [of_record.MANIFEST] + names
    assert cache() == Path(site.folder.parent / "content" / "checkpoints_of_record")
    for path in site.paths:                                   # kept as served, with the same layout
        assert (cache() / path.name).read_bytes() == path.read_bytes()
    entry = of_record.manifest_entry(KEY, IDENTITY, cache())
    assert entry["sha256"] == site.manifest()[KEY]["sha256"] and entry["url"] == f"{site.url}/"


def test_the_second_call_uses_the_cache_without_a_request(site, capsys, monkeypatch):
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY)
    count = len(site.requests)
    monkeypatch.setattr(fetching, "_REMOTE", {})                 # another process, e.g. the next notebook
    model = make_model(2)
    capsys.readouterr()
    assert of_record.load_fp16(model, KEY, IDENTITY) is True
    assert len(site.requests) == count
    assert same_weights(model, fp16_state(site.model))
    out = lines(capsys)
    assert len(out) == 1 and out[0].startswith(f"Loaded the course's trained model {KEY} (checkpoint of record, "
                                               f"fetched from {site.url}/ into {cache()}, SHA-256 checked)")
    monkeypatch.setenv("COURSE_OFFLINE", "1")                     # offline, the cache still serves
    assert of_record.load_fp16(make_model(3), KEY, IDENTITY) is True and len(site.requests) == count


def test_downloads_are_written_atomically_and_a_cut_download_leaves_nothing(site, capsys, monkeypatch):
    written = []
    real = files.atomic_write_bytes

    def spy(path, data):
        written.append(Path(path).name)
        real(path, data)

    monkeypatch.setattr(files, "atomic_write_bytes", spy)          # atomic_write_json goes through it
    monkeypatch.setattr(of_record, "atomic_write_bytes", spy)
    site.rules[site.paths[-1].name] = "truncate"
    refused(site, capsys, "the connection closed after")
    assert written == [] and not any(cache().glob("*"))
    del site.rules[site.paths[-1].name]
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY)
    assert sorted(written) == sorted([p.name for p in site.paths] + [of_record.MANIFEST])
    assert sorted(p.name for p in cache().iterdir()) == sorted(written)     # no temporary file left behind


def test_a_damaged_cache_is_fetched_again(site, capsys, monkeypatch):
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY)
    part = cache() / site.paths[0].name
    part.write_bytes(b"x" * part.stat().st_size)                  # same size, other bytes
    monkeypatch.setattr(fetching, "_REMOTE", {})
    capsys.readouterr()
    model = make_model(2)
    assert of_record.load_fp16(model, KEY, IDENTITY) is True and same_weights(model, fp16_state(site.model))
    out = lines(capsys)
    assert len(out) == 2 and "cannot be used" in out[0] and "SHA-256" in out[0] and "fetched from" in out[1]
    assert part.read_bytes() == site.paths[0].read_bytes()


# --------------------------------------------------------------------------------------------------------------
# Refusals: a paragraph that stops the cell, nothing kept

def test_a_wrong_sha256_is_refused(site, capsys):
    manifest = site.manifest()
    manifest[KEY]["sha256"] = "0" * 64
    site.set_manifest(manifest)
    refused(site, capsys, "SHA-256", "checksum")


def test_a_file_of_another_run_is_refused(site, capsys):
    other = of_record.export_fp16(make_model(5), {"key": "other", "identity_hash": "fedcba987654"}, site.folder)
    manifest = site.manifest()
    manifest[KEY] = {**manifest["other"], "identity_hash": IDENTITY}       # the entry points at another file
    site.set_manifest(manifest)
    assert other
    refused(site, capsys, "holds other (fedcba987654)", "checksum")


def test_another_identity_at_the_release_is_not_loaded(site, capsys):
    refused_identity = "999999999999"
    capsys.readouterr()
    assert of_record.load_fp16(make_model(1), KEY, refused_identity) is False
    out = lines(capsys)
    assert len(out) == 1 and "other settings or data" in out[0]
    assert len(site.requests) == 1                                 # the manifest only


def test_an_http_404_stops_with_the_paragraph(site, capsys):
    site.rules[site.paths[1].name] = 404
    refused(site, capsys, "HTTP 404")


def test_a_release_without_checkpoints_is_asked_once(site, capsys):
    site.rules[of_record.MANIFEST] = 404                          # e.g. the tag was never pushed
    refused(site, capsys, f"{site.url}/manifest.json: the server answered HTTP 404 Not Found")
    refused(site, capsys, "HTTP 404")                              # said again, but not asked again
    assert len(site.requests) == 1
    with pytest.raises(of_record.CheckpointFetchError, match="HTTP 404"):
        of_record.course_weights(KEY, IDENTITY)                   # asked for on purpose: asked again
    assert len(site.requests) == 2


def test_a_file_larger_than_its_manifest_says_is_refused_as_it_arrives(site, capsys):
    manifest = site.manifest()
    assert manifest[KEY]["bytes"] > 1
    manifest[KEY]["bytes"] -= 1
    site.set_manifest(manifest)
    refused(site, capsys, "bytes expected", "checksum")


def test_a_server_that_does_not_answer_times_out(site, capsys, monkeypatch):
    monkeypatch.setattr(fetching, "FETCH_TIMEOUT_S", 0.5)
    site.rules[of_record.MANIFEST] = "stall"
    start = time.monotonic()
    refused(site, capsys, "no answer within 0.5 s")
    assert time.monotonic() - start < 5


def test_a_download_that_trickles_is_cut_off_by_the_overall_deadline(site, capsys, monkeypatch):
    monkeypatch.setattr(fetching, "FETCH_TIMEOUT_S", 0.5)
    monkeypatch.setattr(fetching, "FETCH_MIN_BYTES_PER_S", 10**6)
    site.rules[site.paths[0].name] = "trickle"
    start = time.monotonic()
    refused(site, capsys, "did not finish within 0.5 s")
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("change, words", [({"bytes": 10**12}, "not a number of bytes"),
                                           ({"parts": ["a\x00b"]}, "not a list of file names")])
def test_a_manifest_entry_with_an_absurd_size_or_a_nul_in_a_name_is_refused_before_any_read(
        site, capsys, change, words):
    manifest = site.manifest()
    manifest[KEY].update(change)
    site.set_manifest(manifest)
    refused(site, capsys, words, "checksum")
    assert len(site.requests) == 1                                 # the manifest only: no part was asked for


def test_a_run_that_is_not_of_record_is_silent(site, capsys):
    capsys.readouterr()
    assert of_record.load_fp16(make_model(1), "cifar10-resnet18-other", IDENTITY) is False
    assert of_record.load_fp16(make_model(1), "cifar10-resnet18-more", IDENTITY) is False
    assert lines(capsys) == [] and len(site.requests) == 1          # one manifest for the whole session


# --------------------------------------------------------------------------------------------------------------
# When nothing is fetched

@pytest.mark.parametrize("variable", ["COURSE_FETCH_CHECKPOINTS", "COURSE_OFFLINE"])
def test_opt_out_and_offline_never_touch_the_server(site, capsys, monkeypatch, variable):
    monkeypatch.setenv(variable, "0" if variable == "COURSE_FETCH_CHECKPOINTS" else "1")
    capsys.readouterr()
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY) is False
    assert site.requests == [] and lines(capsys) == []


def test_opting_out_trains_your_own_even_with_a_cache(site, monkeypatch):
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY)
    monkeypatch.setenv("COURSE_FETCH_CHECKPOINTS", "0")
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY) is False


def test_the_repository_and_an_explicit_folder_never_fetch(site, monkeypatch, tmp_path):
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY, folder=tmp_path / "empty") is False
    monkeypatch.setattr(of_record, "OF_RECORD_DIR", cache())       # run inside the repository
    assert of_record.load_fp16(make_model(1), KEY, IDENTITY) is False
    assert site.requests == []


def test_the_repository_folder_comes_first(site, monkeypatch):
    monkeypatch.setattr(of_record, "OF_RECORD_DIR", site.folder)
    model = make_model(1)
    assert of_record.load_fp16(model, KEY, IDENTITY) and same_weights(model, fp16_state(site.model))
    assert site.requests == []


def test_bad_settings_are_named(site, monkeypatch):
    monkeypatch.setenv("COURSE_FETCH_CHECKPOINTS", "maybe")
    with pytest.raises(SettingError, match="COURSE_FETCH_CHECKPOINTS"):
        of_record.load_fp16(make_model(1), KEY, IDENTITY)
    monkeypatch.setenv("COURSE_FETCH_CHECKPOINTS", "1")
    monkeypatch.setenv("COURSE_CHECKPOINTS_URL", "ftp://example.org/x")
    with pytest.raises(SettingError, match="COURSE_CHECKPOINTS_URL"):
        of_record.load_fp16(make_model(1), KEY, IDENTITY)
    monkeypatch.delenv("COURSE_CHECKPOINTS_URL")
    assert of_record.checkpoints_url() == release.CHECKPOINTS_URL


# --------------------------------------------------------------------------------------------------------------
# The release

def test_the_release_constants_are_those_of_config_pyproject_and_the_notebooks():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    fix = "edit course_lib/release.py (tools/set_repo_url.py rewrites _config.yml and the notebooks only)"
    assert (release.REPOSITORY_URL, release.VERSION, release.RELEASE_TAG) == (url, version, f"v{version}"), fix
    installs = {m for nb in sorted((ROOT / "notebooks").glob("*.ipynb"))
                for m in re.findall(r'course_lib @ git\+https://[^"\s@]+@[\w.\-]+', nb.read_text())}
    assert installs == {release.INSTALL_REQUIREMENT}, fix
    org_repo = url.removeprefix("https://github.com/")
    assert release.CHECKPOINTS_URL == \
        f"https://raw.githubusercontent.com/{org_repo}/v{version}/checkpoints_of_record/"
    assert release.raw_url("a/b.json", "main", "https://gitlab.com/o/r.git") == "https://gitlab.com/o/r/raw/main/a/b.json"


# --------------------------------------------------------------------------------------------------------------
# A run of record on Colab: loaded, not trained

def test_a_run_of_record_is_loaded_instead_of_trained(site, capsys, monkeypatch, tmp_path):
    from dataclasses import replace

    from course_lib.experiments import RunSpec, records, runs
    from course_lib.profiles import PROFILES

    monkeypatch.setattr(records, "RECORDS_OF_RECORD", tmp_path / "records_of_record")
    monkeypatch.setenv("COURSE_OFFLINE", "1")                     # the data: the committed samples, not a download
    monkeypatch.setattr(of_record, "offline", lambda: False)       # ... but the checkpoint of record is fetched
    spec = RunSpec("vit", "cifar10", replace(PROFILES["smoke"], test_images=40), train_per_class=2, epochs=1)
    made = runs.train_run(spec, root=tmp_path / "gpu", progress=False)               # the course's GPU run
    records.RECORDS_OF_RECORD.mkdir()
    (records.RECORDS_OF_RECORD / f"{spec.key}.json").write_text(json.dumps(made.record.to_dict()))
    of_record.export_fp16(made.model, made.record, site.folder)
    capsys.readouterr()
    colab = runs.train_run(spec, root=tmp_path / "content", progress=True)
    out = capsys.readouterr().out
    assert f"Loaded the course's trained model {spec.key} (checkpoint of record, fetched from {site.url}/" in out
    assert "Training" not in out and "epoch" not in out.lower(), out
    assert not list((tmp_path / "content").glob("checkpoints/*.pt"))             # nothing trained, nothing saved
    assert colab.record.to_dict() == json.loads(json.dumps(made.record.to_dict()))
    assert same_weights(colab.model.cpu(), fp16_state(made.model.cpu()))
