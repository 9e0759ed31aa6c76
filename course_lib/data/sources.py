"""Where the images of a data set come from, tried in order by :func:`load_dataset` (``source="auto"``).

On disk first, then the network (unless ``COURSE_OFFLINE=1`` or ``download=False``), then the samples:

1. ``torchvision``: the official files under ``root`` in torchvision's own layout.
2. ``cache``: a verified copy cached by an earlier load, ``root/course_cache/`` (:mod:`.cache`; under 2 s).
3. ``jpeg`` (CIFAR-10 only): a JPEG copy laid out as ``<split>/<class>/<k>.jpg`` (the k-th image of that class in
   the official order), as a folder or a ``.tar.xz`` under ``root/cifar10-jpeg/``. Lossy (JPEG quality 75, about
   30 dB PSNR), so accuracies on it run a little below the published ones. Where it comes from and how it is
   checked: :mod:`.jpeg_copy`; ``source="jpeg"`` (the study's profiles) fetches it from there when it is missing.
4. ``mirror``: a fast copy, used only once it passed every check of :func:`.mirrors.verify` (size, class counts,
   order, and pixel equality with every committed sample): the Hugging Face Hub Parquet copy, then any archive
   byte-identical to torchvision's (md5). A verified Hub copy is cached (2.), so it is downloaded once.
5. ``official``: torchvision's archive from the data set's own host (slow since mid-2026), checked by its md5.
6. ``samples``: small real samples with exact pixels that ship inside ``course_lib`` (2,000 CIFAR-10 training
   images, 1,117 CIFAR-100, 883 SVHN, and test samples). Used offline, loudly: a warning says so once per process.

Downloads go through :func:`.download.fetch`: progress line, resume, and a minimum rate below which a source is
given up (loudly, on stderr, once: it is not asked again in this process) for the next one. Only the holder of a
split's lock (:func:`.cache.lock`) downloads it or deletes a damaged cache entry. ``source=`` insists on one source
and raises :class:`DataUnavailableError` (naming the fix) if it is missing; ``source="mirror"`` also accepts the
cached mirror copy. Every :class:`ImageSet` says in ``source`` which copy it is.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..settings import data_root, offline
from . import cache, jpeg_copy, mirrors
from .download import fetch, first_download, notify
from .jpeg_copy import CIFAR10_CLASSES
from .sets import (DATASETS, SAMPLES_DIR, STAND_IN, DataUnavailableError, ImageSet, OfflineSamplesWarning,
                   check_dataset_name)

__all__ = ["SOURCES", "load_dataset", "load_cifar10_jpeg", "load_samples"]

SOURCES = ("auto", "torchvision", "cache", "jpeg", "mirror", "official", "samples")


def _from_torchvision(name: str, split: str, root: Path, download: bool) -> ImageSet:
    import torchvision.datasets as tvd   # imported here: torchvision's dataset module is slow to import

    if name == "svhn":
        ds = tvd.SVHN(str(root), split=split, download=download)
        images, labels, classes = torch.from_numpy(ds.data), torch.as_tensor(ds.labels), [str(i) for i in range(10)]
    else:
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        ds = cls(str(root), train=split == "train", download=download)
        images, labels, classes = torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets), ds.classes
    return ImageSet(images.contiguous(), labels.long(), name, split, list(classes),
                    f"official {DATASETS[name].title} via torchvision ({root})", torch.arange(len(labels)))


def _torchvision_files(name: str, split: str, root: Path) -> tuple[Path, list[tuple[str, str]]]:
    """(folder, [(file, md5)]) of torchvision's copy of a split (CIFAR: every file of the folder, which torchvision
    checks whatever the split)."""
    import torchvision.datasets as tvd

    if name == "svhn":
        _, filename, md5 = tvd.SVHN.split_list[split]
        return root, [(filename, md5)]
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    return root / cls.base_folder, [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]


def _torchvision_problem(name: str, split: str, root: Path, error: Exception) -> str | None:
    """What is wrong with torchvision's files of a split that failed to load, or None when there are none."""
    from torchvision.datasets.utils import check_integrity

    folder, files = _torchvision_files(name, split, root)
    if not (folder.is_dir() if name != "svhn" else (folder / files[0][0]).exists()):
        return None
    missing = [f for f, _ in files if not (folder / f).is_file()]
    damaged = [f for f, md5 in files if f not in missing and not check_integrity(str(folder / f), md5)]
    found = "; ".join(f"{what}: {', '.join(names[:4])}{f' and {len(names) - 4} more' if len(names) > 4 else ''}"
                      for what, names in (("missing", missing), ("failing torchvision's md5 check", damaged)) if names)
    found = found or f"torchvision cannot read them: {type(error).__name__}: {str(error)[:200]}"
    where = folder if name != "svhn" else folder / files[0][0]
    return (f"torchvision's {DATASETS[name].title} files in {where} are damaged or incomplete ({found}). Fix: delete "
            f"{where} and load again with internet access (a verified copy is downloaded), or copy intact files "
            "there")


_NOTED: set[str] = set()


def _note(problem: str, notes: list[str]) -> None:
    """Keep ``problem`` for the caller's error or warning, and say it at once (once per process)."""
    notes.append(problem)
    if problem not in _NOTED:
        _NOTED.add(problem)
        notify(problem + ".")


def _official_labels(name: str, split: str) -> np.ndarray | None:
    """Every official label of a split, in the official order (shipped for CIFAR-10 and CIFAR-100; None for SVHN)."""
    path = SAMPLES_DIR / f"{name}_all_labels.npz"
    return _read_npz(path)[split] if path.exists() else None


def load_cifar10_jpeg(path: str | Path, split: str = "train") -> ImageSet:
    """Load the CIFAR-10 JPEG copy (``<split>/<class>/<k>.jpg``, folder or .tar.xz) in the official order.

    ``<split>/<class>/<k>.jpg`` is the k-th image of that class in the official split, so with the official labels
    (shipped in ``samples/cifar10_all_labels.npz``, as CIFAR-100's are) every image goes back to its official index.
    A copy whose files are the study's (:func:`.jpeg_copy.study_content`, whatever its form: the study's tarball, its
    folders unpacked, the fetched repository) is named in ``source`` as the study's tarball, so runs on it keep the
    identity of the runs of record; any other copy by its own file or folder name.
    """
    path = Path(path)
    check_dataset_name("cifar10", split)
    official = _official_labels("cifar10", split)
    mirrors.verify_jpeg_archive(path)
    files = jpeg_copy.read_split(path, split)
    expected = {(c, k) for c in range(10) for k in range(int((official == c).sum()))}
    if files.keys() != expected:
        missing, extra = sorted(expected - files.keys()), sorted(files.keys() - expected)
        raise DataUnavailableError(
            f"The CIFAR-10 JPEG copy at {path} has {len(files)} {split} images, expected {len(expected)} "
            f"({len(missing)} missing, e.g. {jpeg_copy.file_names(missing)}; {len(extra)} unexpected, e.g. "
            f"{jpeg_copy.file_names(extra)}). Unpack the whole archive again.")
    images = np.empty((len(official), 32, 32, 3), np.uint8)
    for c in range(10):
        for k, pos in enumerate(np.flatnonzero(official == c)):       # official indices of class c, in order
            try:
                images[pos] = np.asarray(Image.open(io.BytesIO(files[c, k])).convert("RGB"))
            except (OSError, ValueError) as error:                    # PIL's UnidentifiedImageError is an OSError
                raise DataUnavailableError(f"The CIFAR-10 JPEG copy at {path}: {jpeg_copy.file_names([(c, k)])} cannot "
                                           f"be decoded ({error}). Unpack the archive again.") from None
    name = jpeg_copy.STUDY_NAME if jpeg_copy.study_content(split, files) else path.name
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(official).long(),
                    "cifar10", split, CIFAR10_CLASSES, f"CIFAR-10 JPEG copy, quality 75 ({name})",
                    torch.arange(len(official)))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a committed ``.npz``, read now, so a damaged file names itself here."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise DataUnavailableError(f"The committed sample file {path} is damaged ({type(error).__name__}: "
                                   f"{str(error)[:160]}). Restore it with `git checkout -- {path.name}` in "
                                   f"{path.parent}, or reinstall course_lib.") from None


def load_samples(name: str, split: str) -> ImageSet:
    """The real samples that ship with the package (exact pixels, with their official indices)."""
    check_dataset_name(name, split)
    shards = sorted(SAMPLES_DIR.glob(f"{name}_{split}_*.npz"))
    if not shards:
        raise DataUnavailableError(f"No committed samples for {name} {split} in {SAMPLES_DIR}; the package is "
                                   "incomplete. Reinstall course_lib from the repository.")
    parts = [_read_npz(s) for s in shards]
    try:
        images = torch.from_numpy(np.concatenate([p["images"] for p in parts])).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(np.concatenate([p["labels"] for p in parts])).long()
        indices = torch.from_numpy(np.concatenate([p["indices"] for p in parts])).long()
        class_names = [str(c) for c in parts[0]["class_names"]]
    except KeyError as error:
        raise DataUnavailableError(f"A committed sample file of {name} {split} in {SAMPLES_DIR} lacks the array "
                                   f"{error}. Restore the files with git or reinstall course_lib.") from None
    info = DATASETS[name]
    if name == "svhn" and split == "test":   # the one split whose real images could not be obtained
        note = (f"committed real samples, exact pixels; {STAND_IN}: {len(labels):,} official SVHN "
                "*training* images, disjoint from the committed training sample (no SVHN test images could be "
                "committed)")
    else:
        note = (f"committed real samples, exact pixels: {len(labels):,} of the {info.sizes[split]:,} official "
                f"{split} images")
    return ImageSet(images, labels, name, split, class_names, note, indices)


_WARNED: set[str] = set()


def _warn_offline_once(name: str, split: str, reason: str, n: int, root: Path) -> None:
    """One loud warning per process (a notebook is one process), not one per data set and split."""
    if _WARNED:
        return
    _WARNED.add(reason)
    message = (f"\n*** {DATASETS[name].title} {split} is not available ({reason}). Using the SMALL committed sample "
               f"instead ({n:,} images), and the same for every other data set this session loads. Accuracies are "
               f"not comparable with full-data results; each data set's printed source says which copy it is. To "
               f"get the full sets, run with internet access (e.g. on Colab) or put them in {_shown(root)}. ***")
    # warn_explicit: the message is the point, not this file's path and line (shown in notebooks and the book).
    warnings.warn_explicit(message, OfflineSamplesWarning, filename="course_lib", lineno=0)


# --------------------------------------------------------------------------------------------------------------
# Downloads: the verified mirrors, then the official archive

def _reference(name: str, split: str) -> mirrors.Reference:
    """What a downloaded copy of ``name`` ``split`` must match (see :func:`.mirrors.verify`)."""
    size = DATASETS[name].sizes[split]
    standin = name == "svhn" and split == "test"        # its committed "test" samples are training images
    samples = None if standin else load_samples(name, split)
    absent = load_samples("svhn", "train") if standin else None
    labels = _official_labels(name, split)
    return mirrors.Reference(
        size, (absent if standin else samples).class_names, mirrors.class_counts(name, split),
        labels=labels if labels is not None and len(labels) == size else None,
        block=10_000 if name == "cifar10" and split == "train" else None,       # data_batch_1..5
        samples=samples, absent=absent)


def _check_cached(data: ImageSet) -> None:
    """Raise CopyRefusedError unless a cached split is the official one: the data set's class names, size, class
    counts and label order (CIFAR), the committed samples' pixels at their indices (an entry passes its own
    checksums even when a bad copy or another tool wrote it)."""
    reference = replace(_reference(data.dataset, data.split), block=None)     # a cached copy is in the official order
    if list(data.class_names) != list(reference.class_names):
        raise mirrors.CopyRefusedError(
            f"it lists {len(data.class_names)} class names ({', '.join(map(str, data.class_names[:3]))}, ...), "
            f"{DATASETS[data.dataset].title} has {len(reference.class_names)} "
            f"({', '.join(map(str, reference.class_names[:3]))}, ...)")
    mirrors.verify(data.images.permute(0, 2, 3, 1).numpy(), data.labels.numpy(), reference, "the cached copy")


def _cached(name: str, split: str, root: Path, on_damage: str) -> ImageSet | None:
    """The verified cached split, or None (see :func:`.cache.load` for ``on_damage``)."""
    return cache.load(name, split, root, check=_check_cached, on_damage=on_damage)


def _from_hub(name: str, split: str, root: Path) -> ImageSet:
    """The verified Hub copy, cached under ``root`` for the next load."""
    data = mirrors.fetch_hub(name, split, root, _reference(name, split))
    try:
        cache.save(data, root)
    except OSError as error:      # a full disk costs the next load a download, not this one its data
        notify(f"Could not cache {name} {split} in {cache.cache_dir(root)} ({error}); the next load downloads "
               "it again.")
    return data


def _official_archive(name: str, split: str) -> tuple[str, str, str]:
    """(URL, file name, md5) of torchvision's official download for a split."""
    import torchvision.datasets as tvd

    if name == "svhn":
        return tuple(tvd.SVHN.split_list[split])
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    return cls.url, cls.filename, cls.tgz_md5


def _from_archive(name: str, split: str, root: Path, url: str, where: str) -> ImageSet:
    """torchvision's official file fetched from ``url`` (trusted only by torchvision's md5), read by torchvision."""
    from torchvision.datasets.utils import extract_archive

    _, filename, md5 = _official_archive(name, split)
    path = fetch(url, root / filename, f"{DATASETS[name].title} {split} {where}", checksum=("md5", md5))
    try:
        if name != "svhn":
            extract_archive(str(path), str(root))
        data = _from_torchvision(name, split, root, download=False)
    except (RuntimeError, OSError, tarfile.TarError, EOFError) as error:
        raise DataUnavailableError(f"{url}: the archive matched its md5 but torchvision cannot read it "
                                   f"({type(error).__name__}: {error}). Delete {path} and try again.") from None
    if where != "from the official host":
        data.source += f"; archive {where} (md5 {md5}, identical to the official file)"
    return data


def _download_attempts(name: str, split: str, root: Path, source: str
                       ) -> list[tuple[str, str, Callable[[], ImageSet]]]:
    """(what, URL, how) for each download to try, in order, for ``source``."""
    attempts = []
    if source in ("auto", "mirror"):
        attempts.append((f"the Hugging Face Hub copy {mirrors.HUB_COPIES[name].repo}",
                         mirrors.HUB_COPIES[name].url(split), lambda: _from_hub(name, split, root)))
        for url in mirrors.archive_urls(name):
            where = f"from the mirror {url.split('/')[2]}"
            attempts.append((f"the archive {where}", url, lambda url=url, where=where:
                             _from_archive(name, split, root, url, where)))
    if source in ("auto", "official", "torchvision"):
        url = _official_archive(name, split)[0]
        attempts.append((f"the official download ({url.split('/')[2]})", url, lambda url=url:
                         _from_archive(name, split, root, url, "from the official host")))
    return attempts


def _download(name: str, split: str, root: Path, source: str) -> tuple[ImageSet | None, str]:
    """(data, "") from the first download that works and passes its checks, or (None, why none did).

    Each failure is said at once (stderr), with the source tried next, and remembered for the process: with
    ``source="auto"`` a source that failed is not asked again (for any split when its host failed); naming the
    source (``"mirror"``, ``"official"``) asks it again."""
    return first_download(_download_attempts(name, split, root, source), f"{DATASETS[name].title} {split}",
                          retry=source != "auto", retry_hint="(load_dataset(..., source='mirror' or 'official') "
                          "asks again.)")


# --------------------------------------------------------------------------------------------------------------
# load_dataset

def _shown(path: Path) -> str:
    """``path`` relative to the current folder when that is shorter (``../data`` from notebooks/), else as given."""
    try:
        relative = os.path.relpath(path)
    except ValueError:       # another drive on Windows
        return str(path)
    return relative if len(relative) < len(str(path)) else str(path)


def _data_folder(root: str | Path | None) -> Path:
    root = Path(root) if root is not None else data_root()
    if root.exists() and not root.is_dir():
        raise DataUnavailableError(f"The data folder {root} is a file. Pass a folder as root= (or set "
                                   "COURSE_DATA_ROOT to one).")
    return root


def _jpeg(name: str, split: str, root: Path, can_download: bool) -> ImageSet:
    """``source="jpeg"``: the JPEG copy on disk, else fetched and verified (:func:`.jpeg_copy.fetch_copy`; one
    process at a time), else an error that says where it comes from."""
    if name != "cifar10":
        raise DataUnavailableError(f"source='jpeg' is CIFAR-10's JPEG copy only; {DATASETS[name].title} has none. "
                                   "Fix: use source='auto'.")
    jpeg = jpeg_copy.find_copy(root)
    if jpeg is None and can_download:
        with cache.lock(root, "cifar10", "jpeg", "Fetching the CIFAR-10 JPEG copy") as held:
            jpeg = jpeg_copy.find_copy(root) or (jpeg_copy.fetch_copy(root) if held else None)
    if jpeg is None:
        why, fix = (("COURSE_OFFLINE is set", "unset COURSE_OFFLINE") if offline() else
                    ("download=False", "load with download=True") if not can_download else
                    (f"the data folder {root} is read-only", "point COURSE_DATA_ROOT at a writable folder"))
        raise DataUnavailableError(
            f"No CIFAR-10 JPEG copy under {root / 'cifar10-jpeg'}, and it is not fetched ({why}). "
            f"{jpeg_copy.where_from()}. Fix: {fix} (it is then fetched and verified), or put the study's "
            f"{jpeg_copy.STUDY_NAME} (SHA-256 {mirrors.JPEG_ARCHIVE['sha256']}) or the repository's train/ and test/ "
            "folders there.")
    return load_cifar10_jpeg(jpeg, split)


def _insisted_on_disk(name: str, split: str, root: Path, source: str, can_download: bool) -> ImageSet:
    """``source="jpeg"`` or ``"cache"``: that copy, or an error that says how to get it."""
    if source == "jpeg":
        return _jpeg(name, split, root, can_download)
    cached = _cached(name, split, root, "skip")
    if cached is None and cache.exists(root, name, split):
        with cache.lock(root, name, split, f"Loading {DATASETS[name].title} {split}") as held:
            cached = _cached(name, split, root, "delete" if held else "report")
    if cached is None:
        raise DataUnavailableError(f"No cached copy of {DATASETS[name].title} {split} in {cache.cache_dir(root)}. "
                                   f"Fix: load it once with internet access (load_dataset({name!r}, {split!r}) or "
                                   "source='mirror'); the verified copy is cached then.")
    return cached


def _on_disk(name: str, split: str, root: Path, source: str, notes: list[str], on_damage: str) -> ImageSet | None:
    """Steps 1-3: torchvision's files, the cache, the JPEG copy (those that ``source`` allows), or None. A damaged
    torchvision copy is said and noted in ``notes``; ``on_damage`` is for the cache (:func:`.cache.load`)."""
    if source in ("auto", "torchvision"):
        try:
            return _from_torchvision(name, split, root, download=False)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
            if (problem := _torchvision_problem(name, split, root, error)) is not None:
                _note(problem, notes)
    if source in ("auto", "mirror") and (cached := _cached(name, split, root, on_damage)) is not None:
        return cached
    if source == "auto" and name == "cifar10" and (jpeg := jpeg_copy.find_copy(root)) is not None:
        return load_cifar10_jpeg(jpeg, split)
    return None


def _locked_load(name: str, split: str, root: Path, source: str, can_download: bool) -> tuple[ImageSet | None, str]:
    """Steps 1-5 holding the split's lock: one download per split at a time (a second process waits, then finds the
    first one's verified cache), and only the lock holder judges a cache entry damaged and deletes it (a reader
    without the lock may be looking at a save in progress). (data or None, why no data)."""
    with cache.lock(root, name, split, f"Loading {DATASETS[name].title} {split}") as held:
        data = _on_disk(name, split, root, source, [], "delete" if held else "report")
        if data is not None or not can_download:
            return data, ""
        if not held:
            return None, (f"the data folder {root} is read-only, so nothing can be downloaded into it; point "
                          "COURSE_DATA_ROOT (or root=) at a writable folder")
        return _download(name, split, root, source)                      # 4-5. mirrors, official


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, source: str = "auto",
                 download: bool = True) -> ImageSet:
    """Load a data set split as an :class:`ImageSet`.

    Args:
        name: "cifar10", "cifar100" or "svhn".
        split: "train" or "test".
        root: the data folder (torchvision's files, ``course_cache/``, ``cifar10-jpeg/``, ``downloads/``); default
            ``$COURSE_DATA_ROOT`` or ``./data``.
        source: "auto" (the order in the module docstring), or one of ``SOURCES`` to insist on it. With "auto", a
            download source that failed earlier in this process is not asked again; naming it asks again.
        download: allow downloads (never when ``COURSE_OFFLINE=1``).

    Raises:
        DataUnavailableError: the requested source is missing; the message says how to get it.
    """
    check_dataset_name(name, split)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}.")
    root = _data_folder(root)
    if source == "samples":
        return load_samples(name, split)
    if source in ("jpeg", "cache"):
        return _insisted_on_disk(name, split, root, source, download and not offline())
    notes: list[str] = []
    data = _on_disk(name, split, root, source, notes, "skip")              # 1-3. on disk, deleting nothing
    if data is not None:
        return data
    can_download, failed = download and not offline(), ""
    if can_download or cache.exists(root, name, split):
        data, failed = _locked_load(name, split, root, source, can_download)
        if data is not None:
            return data
    reason = "; ".join(notes + [failed or ("COURSE_OFFLINE is set" if offline() else "download=False")])
    if source != "auto":
        raise DataUnavailableError(
            f"{DATASETS[name].title} ({split}) is not in {root} and could not be downloaded ({reason}). Fix: connect "
            f"to the internet and call load_dataset({name!r}, download=True); or copy torchvision's files into "
            f"{root}; or use source='samples' for the small real samples that ship with course_lib.")
    sample = load_samples(name, split)                                       # 6. committed samples, loudly
    _warn_offline_once(name, split, reason, len(sample), root)
    return sample
