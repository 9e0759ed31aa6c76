"""The study's CIFAR-10 JPEG copy: its content digest is git's own (checked against the git program), the course's
tarball is the repository's content, and ``source="jpeg"`` fetches the repository's archive from a server on
127.0.0.1 (standing in for GitHub), verifies it, unpacks it and reads it under the same run identity as the tarball.

The served archives are small stand-ins (every test image, a few training images), so the committed tree SHA-1s are
replaced by theirs here; the real ones are checked against the real tarball where the working copy has it."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import QuietHandler, local_http_server
from course_lib.data import DataUnavailableError, SAMPLES_DIR, download, jpeg_copy, load_cifar10_jpeg, load_dataset
from course_lib.data.mirrors import JPEG_ARCHIVE, CopyRefusedError

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT / "data" / "cifar10-jpeg" / JPEG_ARCHIVE["name"]
CLASSES = jpeg_copy.CIFAR10_CLASSES
STUDY_SOURCE = f"CIFAR-10 JPEG copy, quality 75 ({JPEG_ARCHIVE['name']})"


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (value, 255 - value, 128)).save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


TINY = [_jpeg(v) for v in range(0, 250, 10)]


def stand_in(train_per_class: int = 2) -> dict[str, bytes]:
    """{"<split>/<class>/<k>.jpg": bytes}: every test image (1,000 per class), a few training images."""
    files = {}
    for split, per_class in (("test", 1000), ("train", train_per_class)):
        for c, name in enumerate(CLASSES):
            for k in range(per_class):
                files[f"{split}/{name}/{k:04d}.jpg"] = TINY[(7 * c + k) % len(TINY)]
    return files


def github_archive(files: dict[str, bytes]) -> bytes:
    """A tar.gz laid out as GitHub's archives are: one top folder ``<repo>-<commit>/``, other files beside."""
    buffer = io.BytesIO()
    top = f"CIFAR-10-images-{jpeg_copy.COMMIT}"
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in {"README.md": b"# CIFAR-10 images\n", **files}.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pin(monkeypatch, files: dict[str, bytes]) -> None:
    """Make ``files`` the repository's content, as far as the checks go (their tree SHA-1s)."""
    splits, classes = {}, {}
    for split in ("train", "test"):
        part = {p.split("/", 1)[1]: d for p, d in files.items() if p.startswith(split + "/")}
        splits[split], classes[split] = jpeg_copy.split_trees(part)
    monkeypatch.setattr(jpeg_copy, "SPLIT_TREES", splits)
    monkeypatch.setattr(jpeg_copy, "CLASS_TREES", classes)


def serve(body: bytes, status: int = 200):
    """A stand-in for github.com serving ``body`` at the archive URL; returns the list of paths it was asked."""
    asked: list[str] = []

    class Handler(QuietHandler):
        def do_GET(self):
            asked.append(self.path)
            if self.path != f"/{jpeg_copy.REPOSITORY}/archive/{jpeg_copy.COMMIT}.tar.gz" or status != 200:
                self.send_error(404 if status == 200 else status)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")     # GitHub sends no Content-Length
            self.end_headers()
            self.wfile.write(body)

    return Handler, asked


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)


# --------------------------------------------------------------------------------------------------------------
# The digest is git's

@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git program as the reference")
def test_the_tree_sha1s_are_those_git_computes(tmp_path):
    files = {"cat/0000.jpg": TINY[0], "cat/0001.jpg": TINY[1], "cat/0010.jpg": TINY[0], "dog/0000.jpg": TINY[2],
             "dog-and-cat/0000.jpg": TINY[3]}            # "dog-and-cat" sorts before "dog/" in git's order
    for path, data in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    git("add", ".")
    tree = git("write-tree").strip()
    classes = {line.split("\t")[1]: line.split()[2] for line in git("ls-tree", tree).splitlines()}
    assert jpeg_copy.split_trees(files) == (tree, classes)
    assert jpeg_copy.blob_sha1(TINY[0]) == git("hash-object", "cat/0000.jpg").strip()


def test_the_committed_split_trees_are_made_of_the_committed_class_trees():
    for split, classes in jpeg_copy.CLASS_TREES.items():
        assert sorted(classes) == sorted(CLASSES)
        assert jpeg_copy.tree_sha1({c: ("40000", t) for c, t in classes.items()}) == jpeg_copy.SPLIT_TREES[split]


@pytest.mark.slow          # reads the 18.6 MB tarball (all 60,000 files), some 10-20 s on the shared core
@pytest.mark.skipif(not TARBALL.is_file(), reason="the study's tarball is not in this working copy")
def test_the_study_tarball_holds_exactly_the_repositorys_files_at_the_pinned_commit():
    for split in ("train", "test"):
        files = jpeg_copy.read_split(TARBALL, split)
        named = {f"{CLASSES[c]}/{k:04d}.jpg": data for (c, k), data in files.items()}
        assert jpeg_copy.split_trees(named) == (jpeg_copy.SPLIT_TREES[split], jpeg_copy.CLASS_TREES[split])
        assert jpeg_copy.study_content(split, files)


@pytest.mark.slow          # decodes the 10,000 test images twice
@pytest.mark.skipif(not TARBALL.is_file(), reason="the study's tarball is not in this working copy")
def test_the_unpacked_copy_gives_the_records_of_record_their_own_test_data_identity(tmp_path):
    record = json.loads((ROOT / "course_lib" / "records" / "cifar10-vit-course-study-s0.json").read_text())
    want = record["identity"]["test_data"]
    folder = tmp_path / "cifar10-jpeg"
    with tarfile.open(TARBALL) as tar:
        tar.extractall(folder, members=[m for m in tar if m.name.strip("./").startswith("test")], filter="data")
    for copy in (TARBALL, folder):
        data = load_cifar10_jpeg(copy, "test")
        assert {"source": data.source, "images": len(data), "fingerprint": data.fingerprint()} == want, copy
    changed = folder / "test" / "cat" / "0003.jpg"
    changed.write_bytes(_jpeg(40))
    assert load_cifar10_jpeg(folder, "test").source == "CIFAR-10 JPEG copy, quality 75 (cifar10-jpeg)"


# --------------------------------------------------------------------------------------------------------------
# Fetching it

def test_source_jpeg_fetches_verifies_and_unpacks_the_repository_once(tmp_path, monkeypatch, online):
    files = stand_in()
    pin(monkeypatch, files)
    handler, asked = serve(github_archive(files))
    (tmp_path / "cifar10-jpeg.partial" / "test").mkdir(parents=True)          # what a killed unpack left
    (tmp_path / "cifar10-jpeg.partial" / "test" / "half.jpg").write_bytes(b"")
    with local_http_server(handler) as url:
        monkeypatch.setattr(jpeg_copy, "BASE_URL", url)
        data = load_dataset("cifar10", "test", root=tmp_path, source="jpeg")
        again = load_dataset("cifar10", "test", root=tmp_path, source="jpeg")
    assert asked == [f"/{jpeg_copy.REPOSITORY}/archive/{jpeg_copy.COMMIT}.tar.gz"]        # once
    official = np.load(SAMPLES_DIR / "cifar10_all_labels.npz")["test"]
    assert torch.equal(data.labels, torch.from_numpy(official)) and len(data) == 10_000
    assert data.source == again.source == STUDY_SOURCE             # the study's content, the study's identity
    assert data.fingerprint() == again.fingerprint()
    folder = tmp_path / "cifar10-jpeg"
    assert sorted(p.name for p in folder.iterdir()) == ["test", "train"]
    assert len(list((folder / "train").rglob("*.jpg"))) == 20 and not (folder / "README.md").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10-jpeg", "course_cache", "downloads"]
    assert list((tmp_path / "downloads").iterdir()) == []          # the archive is deleted once unpacked
    # A file changed afterwards: still read, but under its own name, so no run of record matches it.
    (folder / "test" / "cat" / "0003.jpg").write_bytes(_jpeg(45))
    assert load_dataset("cifar10", "test", root=tmp_path, source="jpeg").source == (
        "CIFAR-10 JPEG copy, quality 75 (cifar10-jpeg)")


def test_a_fetched_archive_with_a_changed_file_is_refused_and_nothing_is_unpacked(tmp_path, monkeypatch, online):
    files = stand_in()
    pin(monkeypatch, files)
    files["test/cat/0003.jpg"] = _jpeg(45)                            # served: one image that is not the study's
    handler, _ = serve(github_archive(files))
    with local_http_server(handler) as url:
        monkeypatch.setattr(jpeg_copy, "BASE_URL", url)
        with pytest.raises(CopyRefusedError) as caught:
            load_dataset("cifar10", "test", root=tmp_path, source="jpeg")
    message = str(caught.value)
    assert f"{url}/{jpeg_copy.REPOSITORY}/archive/{jpeg_copy.COMMIT}.tar.gz is not the study's" in message
    assert "copy: test (10,000 files, git tree" in message and "differing: test/cat)." in message
    assert "train (" not in message                                   # the split that is the study's is not named
    assert "nothing was unpacked. Fix: run again" in message and JPEG_ARCHIVE["name"] in message
    assert not (tmp_path / "cifar10-jpeg").exists() and list((tmp_path / "downloads").iterdir()) == []


def test_a_fetch_that_fails_says_what_failed_and_the_fix(tmp_path, monkeypatch, online):
    handler, _ = serve(b"", status=503)
    with local_http_server(handler) as url:
        monkeypatch.setattr(jpeg_copy, "BASE_URL", url)
        with pytest.raises(download.DownloadError) as caught:
            load_dataset("cifar10", "test", root=tmp_path, source="jpeg")
    message = str(caught.value)
    assert message.startswith("The study's CIFAR-10 JPEG copy could not be fetched: ") and "HTTP 503" in message
    assert "Fix: check the internet connection and run again" in message and jpeg_copy.COMMIT[:7] in message
    assert not (tmp_path / "cifar10-jpeg").exists()


def test_offline_the_missing_copy_says_where_it_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as caught:
        load_dataset("cifar10", "test", root=tmp_path, source="jpeg")
    message = str(caught.value)
    for words in ("(COURSE_OFFLINE is set)", f"public GitHub repository {jpeg_copy.REPOSITORY} at commit "
                  f"{jpeg_copy.COMMIT[:7]}", f"https://github.com/{jpeg_copy.REPOSITORY}/archive/{jpeg_copy.COMMIT}"
                  ".tar.gz, about 19 MB", f"train {jpeg_copy.SPLIT_TREES['train'][:12]}", "Fix: unset COURSE_OFFLINE",
                  JPEG_ARCHIVE["sha256"]):
        assert words in message, words
    with pytest.raises(DataUnavailableError, match="CIFAR-10's JPEG copy only; SVHN has none"):
        load_dataset("svhn", "test", root=tmp_path, source="jpeg")
