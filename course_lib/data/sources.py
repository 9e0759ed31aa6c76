"""Where the images of a data set come from, tried in order by :func:`load_dataset` (``source="auto"``).

On disk first, then the network (unless ``COURSE_OFFLINE=1`` or ``download=False``), then the samples:

1. ``torchvision``: the official files under ``root`` in torchvision's own layout.
2. ``cache``: a verified copy cached by an earlier load, ``root/course_cache/`` (:mod:`.cache`; under 2 s).
3. ``jpeg`` (CIFAR-10 only): a JPEG copy laid out as ``<split>/<class>/<k>.jpg`` (the k-th image of that class in
   the official order), as a folder or a ``.tar.xz`` under ``root/cifar10-jpeg/``. Lossy (JPEG quality 75, about
   30 dB PSNR), so accuracies on it run a little below the published ones.
4. ``mirror``: a fast copy, used only once it passed every check of :func:`.mirrors.verify` (size, class counts,
   order, and pixel equality with every committed sample): the Hugging Face Hub Parquet copy, then any archive
   byte-identical to torchvision's (md5). A verified Hub copy is cached (2.), so it is downloaded once.
5. ``official``: torchvision's archive from the data set's own host (slow since mid-2026), checked by its md5.
6. ``samples``: small real samples with exact pixels that ship inside ``course_lib`` (2,000 CIFAR-10 training
   images, 1,117 CIFAR-100, 883 SVHN, and test samples). Used offline, loudly: a warning says so once per process.

Downloads go through :func:`.download.fetch`: progress line, resume, and a minimum rate below which a source is
given up (loudly, on stderr) for the next one. ``source=`` insists on one source and raises
:class:`DataUnavailableError` (naming the fix) if it is missing; ``source="mirror"`` also accepts the cached
mirror copy. Every :class:`ImageSet` says in ``source`` which copy it is.
"""
from __future__ import annotations

import io
import os
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..files import file_lock
from ..settings import data_root, offline
from . import cache, mirrors
from .download import fetch, notify
from .sets import DATASETS, SAMPLES_DIR, DataUnavailableError, ImageSet, OfflineSamplesWarning, check_dataset_name

__all__ = ["SOURCES", "load_dataset", "load_cifar10_jpeg", "load_samples"]

SOURCES = ("auto", "torchvision", "cache", "jpeg", "mirror", "official", "samples")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


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


def _find_jpeg_copy(root: Path) -> Path | None:
    """A CIFAR-10 JPEG copy under ``root/cifar10-jpeg`` (a folder with train/ and test/, or a .tar.xz), if any."""
    base = root / "cifar10-jpeg"
    if (base / "train").is_dir():
        return base
    archives = sorted(base.glob("*.tar.xz")) if base.is_dir() else []
    return archives[0] if archives else None


def _official_labels(name: str, split: str) -> np.ndarray | None:
    """Every official label of a split, in the official order (shipped for CIFAR-10 and CIFAR-100; None for SVHN)."""
    path = SAMPLES_DIR / f"{name}_all_labels.npz"
    return _read_npz(path)[split] if path.exists() else None


def _read_jpeg_files(path: Path, split: str) -> dict[tuple[int, int], bytes]:
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


def _jpeg_names(keys: list[tuple[int, int]]) -> str:
    """The first few (class, k) keys as the copy's file names."""
    return ", ".join(f"{CIFAR10_CLASSES[c]}/{k}.jpg" for c, k in keys[:3]) or "none"


def load_cifar10_jpeg(path: str | Path, split: str = "train") -> ImageSet:
    """Load the CIFAR-10 JPEG copy (``<split>/<class>/<k>.jpg``, folder or .tar.xz) in the official order.

    ``<split>/<class>/<k>.jpg`` is the k-th image of that class in the official split, so with the official labels
    (shipped in ``samples/cifar10_all_labels.npz``, as CIFAR-100's are) every image goes back to its official index.
    """
    path = Path(path)
    check_dataset_name("cifar10", split)
    official = _official_labels("cifar10", split)
    files = _read_jpeg_files(path, split)
    expected = {(c, k) for c in range(10) for k in range(int((official == c).sum()))}
    if files.keys() != expected:
        missing, extra = sorted(expected - files.keys()), sorted(files.keys() - expected)
        raise DataUnavailableError(
            f"The CIFAR-10 JPEG copy at {path} has {len(files)} {split} images, expected {len(expected)} "
            f"({len(missing)} missing, e.g. {_jpeg_names(missing)}; {len(extra)} unexpected, e.g. "
            f"{_jpeg_names(extra)}). Unpack the whole archive again.")
    images = np.empty((len(official), 32, 32, 3), np.uint8)
    for c in range(10):
        for k, pos in enumerate(np.flatnonzero(official == c)):       # official indices of class c, in order
            try:
                images[pos] = np.asarray(Image.open(io.BytesIO(files[c, k])).convert("RGB"))
            except (OSError, ValueError) as error:                    # PIL's UnidentifiedImageError is an OSError
                raise DataUnavailableError(f"The CIFAR-10 JPEG copy at {path}: {_jpeg_names([(c, k)])} cannot "
                                           f"be decoded ({error}). Unpack the archive again.") from None
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(official).long(),
                    "cifar10", split, CIFAR10_CLASSES, f"CIFAR-10 JPEG copy, quality 75 ({path.name})",
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
        note = (f"committed real samples, exact pixels; STAND-IN test set: {len(labels):,} official SVHN "
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


def _download_attempts(name: str, split: str, root: Path, source: str) -> list[tuple[str, Callable[[], ImageSet]]]:
    """(what, how) for each download to try, in order, for ``source``."""
    attempts = []
    if source in ("auto", "mirror"):
        attempts.append((f"the Hugging Face Hub copy {mirrors.HUB_COPIES[name].repo}",
                         lambda: _from_hub(name, split, root)))
        for url in mirrors.archive_urls(name):
            where = f"from the mirror {url.split('/')[2]}"
            attempts.append((f"the archive {where}", lambda url=url, where=where:
                             _from_archive(name, split, root, url, where)))
    if source in ("auto", "official", "torchvision"):
        url = _official_archive(name, split)[0]
        attempts.append((f"the official download ({url.split('/')[2]})", lambda url=url:
                         _from_archive(name, split, root, url, "from the official host")))
    return attempts


def _download(name: str, split: str, root: Path, source: str) -> tuple[ImageSet | None, str]:
    """(data, "") from the first download that works and passes its checks, or (None, why none did).

    Each failure is said at once (stderr), with the source tried next."""
    attempts, failures = _download_attempts(name, split, root, source), []
    for k, (what, attempt) in enumerate(attempts):
        try:
            return attempt(), ""
        except DataUnavailableError as error:
            failures.append(f"{what}: {error}")
            then = f"Trying {attempts[k + 1][0]}." if k + 1 < len(attempts) else "No other source to download from."
            notify(f"{DATASETS[name].title} {split}: {what} was not used. {error} {then}")
    return None, "download failed: " + " | ".join(failures)


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


def _insisted_on_disk(name: str, split: str, root: Path, source: str) -> ImageSet:
    """``source="jpeg"`` or ``"cache"``: that copy, or an error that says how to get it."""
    if source == "jpeg":
        jpeg = _find_jpeg_copy(root) if name == "cifar10" else None
        if jpeg is None:
            raise DataUnavailableError(f"No CIFAR-10 JPEG copy under {root / 'cifar10-jpeg'} (only CIFAR-10 has one)."
                                       " Put the .tar.xz or its unpacked train/ and test/ folders there.")
        return load_cifar10_jpeg(jpeg, split)
    cached = cache.load(name, split, root)
    if cached is None:
        raise DataUnavailableError(f"No cached copy of {DATASETS[name].title} {split} in {cache.cache_dir(root)}. "
                                   f"Fix: load it once with internet access (load_dataset({name!r}, {split!r}) or "
                                   "source='mirror'); the verified copy is cached then.")
    return cached


def _on_disk(name: str, split: str, root: Path, source: str) -> ImageSet | None:
    """Steps 1-3: torchvision's files, the cache, the JPEG copy (those that ``source`` allows), or None."""
    if source in ("auto", "torchvision"):
        try:
            return _from_torchvision(name, split, root, download=False)
        except RuntimeError:
            pass
    if source in ("auto", "mirror") and (cached := cache.load(name, split, root)) is not None:
        return cached
    if source == "auto" and name == "cifar10" and (jpeg := _find_jpeg_copy(root)) is not None:
        return load_cifar10_jpeg(jpeg, split)
    return None


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, source: str = "auto",
                 download: bool = True) -> ImageSet:
    """Load a data set split as an :class:`ImageSet`.

    Args:
        name: "cifar10", "cifar100" or "svhn".
        split: "train" or "test".
        root: the data folder (torchvision's files, ``course_cache/``, ``cifar10-jpeg/``, ``downloads/``); default
            ``$COURSE_DATA_ROOT`` or ``./data``.
        source: "auto" (the order in the module docstring), or one of ``SOURCES`` to insist on it.
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
        return _insisted_on_disk(name, split, root, source)
    data = _on_disk(name, split, root, source)                               # 1-3. on disk
    if data is not None:
        return data
    reason = "COURSE_OFFLINE is set" if offline() else "download=False"
    if download and not offline():
        # One download per split at a time: a second process waits, then finds the first one's verified cache.
        # (the lock file stays, in its own folder: deleting a flock file while another process waits on it races)
        lock = cache.cache_dir(root) / "locks" / f"{name}-{split}"
        with file_lock(lock, f"Downloading {DATASETS[name].title} {split}"):
            data = _on_disk(name, split, root, source)
            if data is None:
                data, reason = _download(name, split, root, source)          # 4-5. mirrors, official
        if data is not None:
            return data
    if source != "auto":
        raise DataUnavailableError(
            f"{DATASETS[name].title} ({split}) is not in {root} and could not be downloaded ({reason}). Fix: connect "
            f"to the internet and call load_dataset({name!r}, download=True); or copy torchvision's files into "
            f"{root}; or use source='samples' for the small real samples that ship with course_lib.")
    sample = load_samples(name, split)                                       # 6. committed samples, loudly
    _warn_offline_once(name, split, reason, len(sample), root)
    return sample
